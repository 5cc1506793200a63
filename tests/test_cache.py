"""The keyed cache: where it lives, how it is named, atomic writes, checksums, concurrent builders, leftovers of killed
runs."""

import json
import os
import socket

import datasets

from pipeline.cache import (META_FILE, cache_root, find_damage, keyed_dir, read_meta, remove_stale_scratch,
                            save_atomically, scratch_path)

DEAD_PID = 2**22 + 12345  # above pid_max on Linux: no process has it


def write_folder(marker: str):
    def write(folder):
        folder.mkdir(parents=True)
        (folder / "data.txt").write_text(marker)

    return write


def test_it_lives_in_the_datasets_cache_and_is_named_by_its_inputs(datasets_cache, tmp_path):
    assert datasets.config.HF_DATASETS_CACHE == str(datasets_cache)
    assert cache_root() == datasets_cache / "bert-pretrain"
    assert cache_root(str(tmp_path)) == tmp_path / "bert-pretrain"  # cache_dir moves it, as it moves downloads
    a = keyed_dir("dataset", {"max_seq_length": 128, "seed": 1})
    assert a.parent == cache_root() and a.name.startswith("dataset-")
    assert a == keyed_dir("dataset", {"seed": 1, "max_seq_length": 128})  # the same inputs, in any order
    assert a != keyed_dir("dataset", {"max_seq_length": 64, "seed": 1}) != keyed_dir("tokenizer", {"seed": 1})


def test_a_write_is_whole_or_absent_and_concurrent_builders_keep_one_copy(tmp_path):
    target = tmp_path / "entry"
    save_atomically(target, {"config": {"k": 1}}, write_folder("first"))
    assert (target / "data.txt").read_text() == "first" and read_meta(target)["config"] == {"k": 1}
    # Another builder of the same inputs finishing later: the first complete copy stays, readers never see it go.
    save_atomically(target, {"config": {"k": 1}}, write_folder("second"))
    assert (target / "data.txt").read_text() == "first"
    # Other inputs into the same folder (a pinned dataset_dir): replaced.
    save_atomically(target, {"config": {"k": 2}}, write_folder("third"))
    assert (target / "data.txt").read_text() == "third"

    def fail(folder):
        write_folder("half")(folder)
        raise OSError("killed")

    try:
        save_atomically(tmp_path / "other", {"config": {"k": 3}}, fail)
    except OSError:
        pass
    assert sorted(os.listdir(tmp_path)) == ["entry"]  # nothing half-written, no scratch left


def test_leftovers_of_killed_processes_are_removed_or_put_back(tmp_path):
    host = socket.gethostname()
    live = scratch_path(tmp_path / "dataset-a", "work")  # this process's: in use
    live.mkdir()
    for name in (f".dataset-a.work-{host}-{DEAD_PID}", f".dataset-b.tmp-{host}-{DEAD_PID}", "unrelated"):
        (tmp_path / name).mkdir()
    # Killed between the two renames of save_atomically: the previous copy is whole, so it is put back.
    old = tmp_path / f".tokenizer-c.old-{host}-{DEAD_PID}"
    old.mkdir()
    (old / META_FILE).write_text(json.dumps({"config": {}}))
    remove_stale_scratch(tmp_path / "dataset-a")
    assert sorted(os.listdir(tmp_path)) == [live.name, "tokenizer-c", "unrelated"]


def test_every_file_is_saved_with_its_checksum_and_any_change_is_found(tmp_path):
    target = tmp_path / "entry"

    def write(folder):
        (folder / "split").mkdir(parents=True)
        (folder / "split" / "data.arrow").write_bytes(bytes(range(256)) * 4)
        (folder / "state.json").write_text("{}")

    save_atomically(target, {"config": {"k": 1}}, write)
    checksums = read_meta(target)["checksums"]
    assert sorted(checksums) == ["split/data.arrow", "state.json"] and checksums["state.json"][0] == 2
    assert find_damage(target, checksums) is None
    (target / "notes.txt").write_text("a file it was not saved with")  # read by nothing that loads the folder
    assert find_damage(target, checksums) is None

    data = target / "split" / "data.arrow"
    data.write_bytes(bytes(range(256)) * 2 + bytes(255 - b for b in range(256)) + bytes(range(256)))  # same size
    assert find_damage(target, checksums) == "split/data.arrow changed"
    data.write_bytes(bytes(range(256)))
    assert find_damage(target, checksums) == "split/data.arrow truncated to 256 of 1,024 bytes"
    data.write_bytes(bytes(range(256)) * 5)
    assert find_damage(target, checksums) == "split/data.arrow changed: 1,280 bytes, saved with 1,024"
    data.unlink()
    (target / "state.json").unlink()
    assert find_damage(target, checksums) == "split/data.arrow missing, and 1 more"


def test_a_concurrent_builder_replaces_a_damaged_copy_instead_of_keeping_it(tmp_path):
    target = tmp_path / "entry"
    save_atomically(target, {"config": {"k": 1}}, write_folder("first"))
    (target / "data.txt").write_text("firsT")
    save_atomically(target, {"config": {"k": 1}}, write_folder("second"))
    assert (target / "data.txt").read_text() == "second" and sorted(os.listdir(tmp_path)) == ["entry"]


def test_a_damaged_scratch_tokenizer_is_trained_again_and_one_from_before_checksums_kept(capsys):
    from pipeline.wordpiece import scratch_tokenizer
    from tests.conftest import make_documents

    texts = make_documents(40)
    first = scratch_tokenizer(texts, 120, lowercase=True)
    [folder] = cache_root().iterdir()
    vocab = first.get_vocab()
    with open(folder / "tokenizer.json", "r+b") as f:  # a byte inside, the size kept
        f.seek(100)
        f.write(b"\0")
    again = scratch_tokenizer(texts, 120, lowercase=True)
    assert capsys.readouterr().err == f"tokenizer in {folder} is damaged (tokenizer.json changed); training it again\n"
    assert find_damage(folder, read_meta(folder)["checksums"]) is None and len(again) == len(vocab)
    # Saved before checksums were recorded: kept, since training again could change the ids a checkpoint learned.
    meta = read_meta(folder)
    del meta["checksums"]
    (folder / META_FILE).write_text(json.dumps(meta))
    stamp = (folder / META_FILE).stat().st_mtime_ns
    assert scratch_tokenizer(texts, 120, lowercase=True).get_vocab() == again.get_vocab()
    assert (folder / META_FILE).stat().st_mtime_ns == stamp and capsys.readouterr().err == ""
