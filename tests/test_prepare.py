import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from datasets import load_from_disk

from pipeline.__main__ import main
from pipeline.cache import cache_root, find_damage, read_meta
from pipeline.errors import UsageError
from pipeline.prepare import prepare_dataset


def test_prepare_builds_splits_and_reuses_cache(tokenizer, corpus_file, tmp_path):
    dataset_dir = str(tmp_path / "dataset")
    dataset, stats, *_ = prepare_dataset(tokenizer, train_files=[corpus_file], dataset_dir=dataset_dir,
                                     max_seq_length=32, validation_split_percentage=10, seed=1)
    assert set(dataset) == {"train", "validation"}
    assert {"input_ids", "token_type_ids", "next_sentence_label"} <= set(dataset["train"].column_names)
    assert stats["train"]["documents"] == 54 and stats["validation"]["documents"] == 6
    assert all(len(ids) <= 32 for ids in dataset["train"]["input_ids"])
    saved = json.loads((tmp_path / "dataset" / "prepare.json").read_text())
    assert saved["stats"] == stats

    stamp = os.path.getmtime(os.path.join(dataset_dir, "prepare.json"))
    again, stats_again, *_ = prepare_dataset(tokenizer, train_files=[corpus_file], dataset_dir=dataset_dir,
                                         max_seq_length=32, validation_split_percentage=10, seed=1)
    assert stats_again == stats and os.path.getmtime(os.path.join(dataset_dir, "prepare.json")) == stamp
    assert again["train"]["input_ids"][:] == dataset["train"]["input_ids"][:]

    # A changed setting rebuilds; nothing temporary is left beside the dataset.
    _, other, *_ = prepare_dataset(tokenizer, train_files=[corpus_file], dataset_dir=dataset_dir,
                               max_seq_length=24, validation_split_percentage=10, seed=1)
    assert other != stats and sorted(os.listdir(tmp_path)) == ["corpus.txt", "dataset"]


def test_the_cache_is_keyed_by_the_inputs_and_keeps_every_variant(tokenizer, corpus_file, datasets_cache):
    """Without dataset_dir the dataset lives in HF_DATASETS_CACHE, named by its inputs: 128 -> 64 -> 128 prepares
    twice, and whoever asks again (another run, another output_dir) gets the same folder back."""
    built = [prepare_dataset(tokenizer, train_files=[corpus_file], max_seq_length=n, seed=1) for n in (128, 64, 128)]
    assert [p.reused for p in built] == [False, False, True]
    assert built[0].path == built[2].path != built[1].path and built[0].stats == built[2].stats
    assert sorted(os.listdir(datasets_cache / "bert-pretrain")) == sorted(os.path.basename(p.path) for p in built[:2])
    assert "(reused)" in built[2].describe() and f"(built in {built[0].seconds:.1f} s)" in built[0].describe()
    # An edited corpus is another input (its size and time are part of the key).
    with open(corpus_file, "a") as f:
        f.write("A new river runs. It runs to the sea.\n")
    again = prepare_dataset(tokenizer, train_files=[corpus_file], max_seq_length=128, seed=1)
    assert not again.reused and again.path != built[0].path


def test_validation_documents_never_reach_training(tokenizer, corpus_file, tmp_path):
    dataset, _, *_ = prepare_dataset(tokenizer, train_files=[corpus_file], dataset_dir=str(tmp_path / "d"),
                                 max_seq_length=64, validation_split_percentage=20, seed=3, nsp_probability=0.0)

    def sentence_set(split):
        return {tuple(ids) for ids in dataset[split]["input_ids"][:]}

    val_tokens = {tuple(ids[1:ids.index(tokenizer.sep_token_id)]) for ids in dataset["validation"]["input_ids"][:]}
    train_text = [ids for ids in dataset["train"]["input_ids"][:]]
    for a in val_tokens:
        assert not any(_contains(ids, list(a)) for ids in train_text)
    assert sentence_set("train").isdisjoint(sentence_set("validation"))


def _contains(haystack, needle):
    n = len(needle)
    return any(haystack[i:i + n] == needle for i in range(len(haystack) - n + 1))


def test_corpus_without_two_sentence_documents_is_refused(tokenizer, tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("\n".join(f"Only one sentence number {i}" for i in range(20)))
    with pytest.raises(UsageError, match="no document has two sentences.*--objective mlm"):
        prepare_dataset(tokenizer, train_files=[str(path)], dataset_dir=str(tmp_path / "d"),
                        validation_split_percentage=0)
    assert not (tmp_path / "d").exists()


def marked_corpus(path, n_docs=500, seed=0):
    """Sentences of six single-token words: two name the document, one the sentence index."""
    import random

    from tests.conftest import WORDS

    rng = random.Random(seed)
    lines = []
    for d in range(n_docs):
        n = rng.randint(1, 12)
        lines.append(" ".join(f"{WORDS[d // 28].capitalize()} {WORDS[d % 28]} {WORDS[s]} {rng.choice(WORDS)} {rng.choice(WORDS)} ."
                              for s in range(n)))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _sentences(tokenizer, ids):
    words = tokenizer.convert_ids_to_tokens(ids)
    assert len(words) % 6 == 0
    return [(words[i], words[i + 1], words[i + 2]) for i in range(0, len(words), 6)]


def test_pair_properties_on_a_generated_corpus(tokenizer, tmp_path):
    from tests.conftest import WORDS

    corpus = marked_corpus(tmp_path / "c.txt")
    dataset, stats, *_ = prepare_dataset(tokenizer, train_files=[corpus], dataset_dir=str(tmp_path / "d"),
                                     max_seq_length=64, validation_split_percentage=10, seed=0, dupe_factor=2)
    train = dataset["train"]
    assert stats["train"]["examples"] > 500 and stats["train"]["draws"] == 2
    labels = np.array(train["next_sentence_label"][:])
    assert abs(labels.mean() - 0.5) < 3 * (0.25 / len(labels)) ** 0.5  # three standard errors
    assert max(train["length"][:]) <= 64
    checked = {0: 0, 1: 0}
    for ids, label, cut in zip(train["input_ids"][:], labels, train["truncated"][:]):
        if cut:
            continue
        sep = ids.index(tokenizer.sep_token_id)
        a, b = _sentences(tokenizer, ids[1:sep]), _sentences(tokenizer, ids[sep + 1:-1])
        if label == 0:  # B is the text that follows A in the same document
            assert b[0][:2] == a[-1][:2] and WORDS.index(b[0][2]) == WORDS.index(a[-1][2]) + 1
        else:  # B comes from another document
            assert b[0][:2] != a[-1][:2]
        checked[int(label)] += 1
    assert checked[0] > 100 and checked[1] > 100
    # The two draws differ; the validation split has one draw and no epoch column.
    draws = np.array(train["epoch"][:])
    assert sorted(set(draws)) == [0, 1] and "epoch" not in dataset["validation"].column_names
    first = [ids for ids, d in zip(train["input_ids"][:], draws) if d == 0]
    second = [ids for ids, d in zip(train["input_ids"][:], draws) if d == 1]
    assert first != second


def test_same_seed_same_dataset_other_seed_other(tokenizer, tmp_path):
    corpus = marked_corpus(tmp_path / "c.txt", n_docs=100)
    kwargs = dict(train_files=[corpus], max_seq_length=48, validation_split_percentage=10)
    a, _, *_ = prepare_dataset(tokenizer, dataset_dir=str(tmp_path / "a"), seed=1, **kwargs)
    b, _, *_ = prepare_dataset(tokenizer, dataset_dir=str(tmp_path / "b"), seed=1, **kwargs)
    c, _, *_ = prepare_dataset(tokenizer, dataset_dir=str(tmp_path / "c"), seed=2, **kwargs)
    assert a["train"][:] == b["train"][:] and a["validation"][:] == b["validation"][:]
    assert a["train"]["input_ids"][:] != c["train"]["input_ids"][:]


def test_a_named_dataset_dir_travels_to_a_machine_without_the_corpus(tokenizer, corpus_file, tmp_path):
    import shutil

    _, stats, *_ = prepare_dataset(tokenizer, train_files=[corpus_file], dataset_dir=str(tmp_path / "made"),
                               max_seq_length=32, seed=1)
    shutil.copytree(tmp_path / "made", tmp_path / "elsewhere")
    os.remove(corpus_file)  # "another machine": the corpus is not there
    stamp = os.path.getmtime(tmp_path / "elsewhere" / "prepare.json")
    dataset, again, *_ = prepare_dataset(tokenizer, train_files=[corpus_file], dataset_dir=str(tmp_path / "elsewhere"),
                                     max_seq_length=32, seed=1, portable=True)
    assert again == stats and os.path.getmtime(tmp_path / "elsewhere" / "prepare.json") == stamp
    with pytest.raises(UsageError, match="prepared with other settings"):
        prepare_dataset(tokenizer, train_files=[corpus_file], dataset_dir=str(tmp_path / "elsewhere"),
                        max_seq_length=48, seed=1, portable=True)


def test_scratch_of_a_killed_run_is_never_reused(tokenizer, corpus_file, tmp_path):
    """A scratch folder with this very host and pid (a restarted container) holds another corpus's tables."""
    from pipeline.cache import scratch_path

    other = tmp_path / "other.txt"
    other.write_text("Stone water tree. Cloud wind fire.\nRiver road house. Field bird song.\n" * 30)
    dataset_dir = str(tmp_path / "dataset")
    stale, _, *_ = prepare_dataset(tokenizer, train_files=[str(other)], dataset_dir=str(tmp_path / "stale"),
                               max_seq_length=32, seed=1)
    work = scratch_path(dataset_dir, "work")
    work.mkdir(parents=True)
    for name in ("sentences.arrow", "nonempty.arrow", "train.arrow"):  # names prepare gives its tables
        (work / name).write_bytes(b"not what this corpus makes")
    fresh, stats, *_ = prepare_dataset(tokenizer, train_files=[corpus_file], dataset_dir=dataset_dir, max_seq_length=32,
                                   seed=1)
    clean, clean_stats, *_ = prepare_dataset(tokenizer, train_files=[corpus_file], dataset_dir=str(tmp_path / "clean"),
                                         max_seq_length=32, seed=1)
    assert stats == clean_stats and fresh["train"][:] == clean["train"][:]
    assert not work.exists()


def test_a_cache_left_only_as_old_by_a_kill_is_put_back(tokenizer, corpus_file, tmp_path):
    import shutil

    dataset_dir = tmp_path / "dataset"
    _, stats, *_ = prepare_dataset(tokenizer, train_files=[corpus_file], dataset_dir=str(dataset_dir), max_seq_length=32)
    dead_pid = 2**22 + 12345  # above pid_max on Linux: no process has it
    import socket

    shutil.move(dataset_dir, tmp_path / f".dataset.old-{socket.gethostname()}-{dead_pid}")
    stamp = os.path.getmtime(tmp_path / f".dataset.old-{socket.gethostname()}-{dead_pid}" / "prepare.json")
    _, again, *_ = prepare_dataset(tokenizer, train_files=[corpus_file], dataset_dir=str(dataset_dir), max_seq_length=32)
    assert again == stats and sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert os.path.getmtime(dataset_dir / "prepare.json") == stamp  # reused, not rebuilt


@pytest.mark.slow
def test_pairs_do_not_depend_on_the_number_of_workers(tokenizer, tmp_path):
    """Several groups of documents: a 2-core laptop and a many-core node must train on the same pairs."""
    from tests.conftest import make_documents

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(make_documents(3500, seed=5)) + "\n", encoding="utf-8")
    kwargs = dict(train_files=[str(corpus)], max_seq_length=48, validation_split_percentage=5, seed=0, dupe_factor=2)
    built = {n: prepare_dataset(tokenizer, dataset_dir=str(tmp_path / f"d{n}"), num_proc=n, **kwargs)[0]
             for n in (None, 2, 3)}
    assert len(built[None]["train"]) > 10_000
    for n in (2, 3):
        for split in ("train", "validation"):
            assert built[n][split][:] == built[None][split][:], (n, split)
    # The worker count is not part of the cache key: another count reuses the prepared folder.
    saved = (tmp_path / "dNone" / "prepare.json").stat().st_mtime_ns
    prepare_dataset(tokenizer, dataset_dir=str(tmp_path / "dNone"), num_proc=2, **kwargs)
    assert (tmp_path / "dNone" / "prepare.json").stat().st_mtime_ns == saved


GERMAN = [
    ["Der Mietvertrag wurde am 3. Oktober 2021 unterschrieben.",
     "Nach § 5 Abs. 2 des Vertrags ist die Miete monatlich im Voraus zu zahlen.",
     "Der Mieter bzw. seine Vertreter müssen Schäden sofort melden."],
    ["Dr. Schneider leitet die Abteilung seit ca. 12 Jahren.", "Sie hat z. B. das neue Archiv aufgebaut.",
     "Ihre Kollegen schätzen sie sehr."],
    ["Am Montag, 3. Oktober, bleibt das Büro geschlossen.", "Wir sind ab Dienstag wieder für Sie da.",
     "Vielen Dank für Ihr Verständnis!"],
    ["Die Sitzung beginnt um 9.30 Uhr.", "Bitte bringen Sie die Unterlagen nach Abs. 4 mit.",
     "Fragen beantwortet Dr. Weber."],
    ["Wie hoch sind die Kosten?", "Sie betragen ca. 250 Euro pro Monat.", "Das ist günstig!"],
    ["Die Frist endet am 31. Dezember.", "Danach gilt die Regelung bzw. der Vertrag nicht mehr.",
     "Eine Verlängerung ist z.B. per Brief möglich."],
    ["Prof. Dr. Meier hielt am 12. Mai einen Vortrag.", "Er sprach über die Geschichte der Stadt.",
     "Rund 80 Zuhörer kamen."],
    ["Laut Abs. 3 darf der Vermieter die Wohnung betreten.", "Er muss dies aber ca. eine Woche vorher ankündigen.",
     "Ausnahmen gelten z. B. bei einem Wasserschaden."],
    ["Der Umzug ist für den 1. März geplant.", "Die Kisten stehen bereit.", "Hoffentlich regnet es nicht!"],
    ["Herr Dr. Braun bzw. seine Assistentin beantworten Ihre Fragen.", "Die Sprechzeiten sind montags bis freitags.",
     "Am 24. Dez. ist geschlossen."],
]
CHINESE = [
    ["今天天气很好。", "我们去公园散步吧！", "你想一起来吗？"],
    ["他说：“我明天来。”", "然后他就走了。", "我们都很高兴。"],
    ["这本书的价格是35.5元。", "它讲的是中国历史。", "很多学生都喜欢读。"],
    ["北京是中国的首都。", "上海是最大的城市。", "深圳发展得很快！"],
    ["你吃饭了吗？", "还没有。", "那我们一起去吧！"],
    ["会议在下午三点开始。", "请大家准时参加。", "有问题可以问老师。"],
    ["这个问题很难。", "我想了很久也不明白。", "你能帮我吗？"],
    ["春天来了。", "花都开了。", "孩子们在外面玩。"],
    ["他每天早上跑步。", "他说这样身体更好！", "我也想试试。"],
    ["我们学习Python的新功能。", "它非常有用。", "你用过吗？"],
]


@pytest.mark.parametrize("language, paragraphs, joiner", [("de", GERMAN, " "), ("zh", CHINESE, "")])
def test_pairs_are_the_sentences_of_the_text_in_its_language(language, paragraphs, joiner, tmp_path):
    from tests.conftest import SPECIALS, make_tokenizer

    # A tokenizer that knows every word (BERT's pre-tokenizer makes each CJK character a word), so that
    # sentences compare by their ids, [UNK]-free.
    backend = make_tokenizer().backend_tokenizer
    words = [w for p in paragraphs for s in p
             for w, _ in backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(s))]
    tokenizer = make_tokenizer({t: i for i, t in enumerate(dict.fromkeys(SPECIALS + words))})
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(joiner.join(p) for p in paragraphs) + "\n", encoding="utf-8")

    dataset, _, *_ = prepare_dataset(tokenizer, train_files=[str(corpus)], dataset_dir=str(tmp_path / "d"),
                                 pairing="sentences", language=language, max_seq_length=128, nsp_probability=0.3,
                                 validation_split_percentage=0, seed=0)
    ids = [[tuple(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in p] for p in paragraphs]
    sentences = {s for p in ids for s in p}
    consecutive = {(p[i], p[i + 1]) for p in ids for i in range(len(p) - 1)}
    train = dataset["train"]
    assert not any(train["truncated"])
    positives = 0
    for input_ids, label in zip(train["input_ids"], train["next_sentence_label"]):
        sep = input_ids.index(tokenizer.sep_token_id)
        a, b = tuple(input_ids[1:sep]), tuple(input_ids[sep + 1:-1])
        assert a in sentences and b in sentences, tokenizer.decode(input_ids)
        if label == 0:
            assert (a, b) in consecutive, tokenizer.decode(input_ids)
            positives += 1
    assert positives >= 5


def test_an_empty_split_pairs_to_nothing(tokenizer):
    from datasets import Dataset

    from pipeline.prepare import DOCUMENT_FEATURES, pair_documents

    empty = Dataset.from_dict({"sentences": [], "num_sentences": [], "num_tokens": [], "overlong_tokens": []},
                              features=DOCUMENT_FEATURES)
    assert len(pair_documents(empty, split="validation", seed=0, tokenizer=tokenizer, num_proc=2, max_num_tokens=20,
                              objective="mlm")) == 0



@pytest.mark.parametrize("objective,pairing", [("nsp", "segments"), ("nsp", "sentences"), ("sop", "segments"),
                                               ("sop", "sentences"), ("mlm", "segments")])
def test_prepared_pairs_are_make_pairs_of_the_group(tokenizer, objective, pairing):
    """The pairs `prepare` gathers as spans of each group's token array are, row for row, `make_pairs` over the
    group's documents as token lists: on licence texts (long sentences, most pairs truncated), read through a
    filter's indices mapping as prepare reads them."""
    import random

    from datasets import Dataset

    from pipeline.encoding import SentenceEncoder, encode_documents
    from pipeline.features import build_features, special_template
    from pipeline.pairs import make_pairs
    from pipeline.prepare import DOCUMENT_FEATURES, _pair_groups

    paragraphs = [p for path in sorted(Path("/usr/share/common-licenses").glob("*[0-9]"))
                  for p in path.read_text().split("\n\n") if p.strip()]
    documents = Dataset.from_dict({"text": paragraphs}).map(
        encode_documents, batched=True, input_columns="text", remove_columns=["text"], features=DOCUMENT_FEATURES,
        fn_kwargs={"encoder": SentenceEncoder(tokenizer), "max_num_tokens": 29}).filter(
        lambda n: n % 3 > 0, input_columns="num_sentences")  # an indices mapping, rows of every length kept
    template = special_template(tokenizer)
    kwargs = dict(max_num_tokens=29, short_seq_prob=0.2, nsp_probability=0.5, pairing=pairing)
    group = 150
    got = _pair_groups({"start": [0, group]}, documents=documents.select_columns(["sentences"]), group_size=group,
                       split="train", draws=2, seed=3, template=template, objective=objective, **kwargs)
    tables = []
    for start in (0, group):
        sentences = documents[start:start + group]["sentences"]
        for draw in range(2):
            pairs = make_pairs(sentences, rng=random.Random(f"3-train-{draw}-{start}"), objective=objective, **kwargs)
            tables.append(build_features(pairs, template=template).to_pydict())
    want = {name: [v for table in tables for v in table[name]] for name in tables[0]}
    got = got.to_pydict()
    assert len(got["input_ids"]) > 500 and (objective == "mlm" or sum(got["truncated"]) > 100)
    assert {k: v for k, v in got.items() if k != "epoch"} == want

ARROW = "data-00000-of-00001.arrow"


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _flip(path):
    """64 bytes in the middle of the file inverted: its size, and often its loading, unchanged."""
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        chunk = f.read(64)
        f.seek(-len(chunk), os.SEEK_CUR)
        f.write(bytes(255 - b for b in chunk))


# (id, what is done to the prepared folder, how the damage is named)
DAMAGE = [
    ("truncated arrow", lambda d: _truncate(d / "train" / ARROW),
     rf"train/{ARROW} truncated to [\d,]+ of [\d,]+ bytes"),
    ("bytes changed in arrow", lambda d: _flip(d / "train" / ARROW), rf"train/{ARROW} changed"),
    ("state.json missing", lambda d: os.remove(d / "train" / "state.json"), r"train/state\.json missing"),
    ("dataset_info.json missing", lambda d: os.remove(d / "validation" / "dataset_info.json"),
     r"validation/dataset_info\.json missing"),
    ("dataset_dict.json missing", lambda d: os.remove(d / "dataset_dict.json"), r"dataset_dict\.json missing"),
    ("validation split deleted", lambda d: shutil.rmtree(d / "validation"), rf"validation/{ARROW} missing, and 2 more"),
]


def _rows(path) -> dict:
    dataset = load_from_disk(str(path))
    return {split: dataset[split][:] for split in dataset}


def _files(path) -> dict:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _hidden(*folders) -> list:
    """Scratch folders (hidden siblings) a run left."""
    return [p.name for folder in folders for p in folder.iterdir() if p.name.startswith(".")]


def _said(stderr: str) -> list[str]:
    """The lines of stderr that this tool wrote (progress bars aside)."""
    return [line for line in stderr.splitlines() if line.startswith(("bert-pretrain", "prepared dataset"))]


@pytest.mark.parametrize("name, damage, named", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_a_damaged_dataset_is_rebuilt_or_refused_before_it_is_used(name, damage, named, tiny_model_dir, corpus_file,
                                                                   tmp_path, capsys):
    argv = ["prepare", "--model_name_or_path", tiny_model_dir, "--train_file", corpus_file, "--max_seq_length", "32",
            "--output_dir", str(tmp_path / "out")]
    assert main(argv) == 0
    [keyed] = cache_root().iterdir()
    rows = _rows(keyed)
    shutil.copytree(keyed, tmp_path / "copy")

    # In the cache: rebuilt from the corpus, row for row the dataset it was, with nothing left beside it.
    damage(keyed)
    capsys.readouterr()
    assert main(argv) == 0
    [said] = _said(capsys.readouterr().err)
    assert re.fullmatch(rf"prepared dataset in {re.escape(str(keyed))} is damaged \({named}\); rebuilding it", said)
    assert _rows(keyed) == rows and find_damage(keyed, read_meta(keyed)["checksums"]) is None
    assert [p.name for p in cache_root().iterdir()] == [keyed.name]

    # A copy on a machine without the corpus: one sentence naming the damage and the fix, exit 2, nothing written.
    copy = tmp_path / "copy"
    damage(copy)
    os.remove(corpus_file)
    before = _files(copy)
    assert main(argv + ["--dataset_dir", str(copy)]) == 2
    [said] = _said(capsys.readouterr().err)
    assert re.fullmatch(rf"bert-pretrain prepare: error: the prepared dataset in {re.escape(str(copy))} is damaged "
                        rf"\({named}\) and the corpus to rebuild it is not here; copy the folder again, or give "
                        r"train_file\.", said)
    assert _files(copy) == before and _hidden(tmp_path, cache_root()) == []


def test_an_intact_dataset_is_checked_and_reused(tokenizer, corpus_file, capsys):
    built = prepare_dataset(tokenizer, train_files=[corpus_file], max_seq_length=32)
    capsys.readouterr()
    folder = Path(built.path)
    stamp = (folder / "prepare.json").stat().st_mtime_ns
    # A file it was not saved with (a `.map()` cache, an OS's metadata) is read by nothing that loads it: not damage.
    (folder / "train" / "cache-0123456789abcdef.arrow").write_bytes(b"written by a .map() on the loaded dataset")
    again = prepare_dataset(tokenizer, train_files=[corpus_file], max_seq_length=32)
    assert again.reused and (folder / "prepare.json").stat().st_mtime_ns == stamp
    assert again.dataset["train"][:] == built.dataset["train"][:] and _said(capsys.readouterr().err) == []


def test_a_damaged_dataset_dir_beside_its_corpus_is_rebuilt(tokenizer, corpus_file, tmp_path, capsys):
    dataset_dir = tmp_path / "dataset"
    built = prepare_dataset(tokenizer, train_files=[corpus_file], dataset_dir=str(dataset_dir), max_seq_length=32,
                            portable=True)
    rows = _rows(dataset_dir)
    _flip(dataset_dir / "validation" / ARROW)
    again = prepare_dataset(tokenizer, train_files=[corpus_file], dataset_dir=str(dataset_dir), max_seq_length=32,
                            portable=True)
    assert _said(capsys.readouterr().err) == [
        f"prepared dataset in {dataset_dir} is damaged (validation/{ARROW} changed); rebuilding it"]
    assert not again.reused and again.stats == built.stats and _rows(dataset_dir) == rows
    assert _hidden(tmp_path) == []


def test_a_copy_without_prepare_json_and_without_its_corpus_is_refused(tiny_model_dir, corpus_file, tmp_path, capsys):
    argv = ["prepare", "--model_name_or_path", tiny_model_dir, "--train_file", corpus_file, "--max_seq_length", "32",
            "--output_dir", str(tmp_path / "out"), "--dataset_dir", str(tmp_path / "copy")]
    assert main(argv) == 0
    os.remove(tmp_path / "copy" / "prepare.json")
    os.remove(corpus_file)
    capsys.readouterr()
    assert main(argv) == 2
    assert _said(capsys.readouterr().err) == [
        f"bert-pretrain prepare: error: {tmp_path / 'copy'} has no readable prepare.json (a damaged or incomplete copy "
        "of a prepared dataset) and the corpus to rebuild it is not here; copy the folder again, or give train_file."]


def test_a_dataset_from_before_checksums_is_rebuilt_or_used_unverified(tokenizer, corpus_file, tmp_path, capsys):
    """Rebuilt where its corpus is; a copy without its corpus is used as before, with a warning."""
    built = prepare_dataset(tokenizer, train_files=[corpus_file], max_seq_length=32)
    folder, rows = Path(built.path), _rows(built.path)
    meta = read_meta(folder)
    del meta["checksums"]
    (folder / "prepare.json").write_text(json.dumps(meta))
    shutil.copytree(folder, tmp_path / "copy")
    again = prepare_dataset(tokenizer, train_files=[corpus_file], max_seq_length=32)
    assert not again.reused and "checksums" in read_meta(folder) and _rows(folder) == rows
    assert _said(capsys.readouterr().err) == [
        f"prepared dataset in {folder} has no checksums (prepared by an older version); rebuilding it"]
    os.remove(corpus_file)
    copied = prepare_dataset(tokenizer, train_files=[corpus_file], dataset_dir=str(tmp_path / "copy"),
                             max_seq_length=32, portable=True)
    assert copied.reused and _rows(tmp_path / "copy") == rows
    assert _said(capsys.readouterr().err) == [
        f"prepared dataset in {tmp_path / 'copy'} has no checksums (prepared by an older version); using it unverified "
        "(prepare it again where the corpus is to add them)"]


def test_a_dataset_dir_of_other_files_is_never_replaced(tiny_model_dir, corpus_file, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("not a dataset")
    assert main(["prepare", "--model_name_or_path", tiny_model_dir, "--train_file", corpus_file,
                 "--max_seq_length", "32", "--dataset_dir", str(mine), "--output_dir", str(tmp_path / "out")]) == 2
    assert "holds other files, not a prepared dataset" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
