"""One rank of the two-process tests (tests/test_distributed.py); started by torchrun (the `torchrun` fixture).

Runs the real entry point and writes what this rank saw to <output_dir>/rank<N>.json:
a hash of its prepared training set, the training examples it collated, and its own
per-head sums at each log (before they are reduced over ranks), and a hash of its trained weights.
"""

import hashlib
import json
import os
import sys

import pipeline.train as train_module
from pipeline.trainer import PreTrainer

seen, local_sums = [], []
make_collator = train_module.build_collator


def recording_collator(*args, **kwargs):
    collator = make_collator(*args, **kwargs)
    call = collator.torch_call

    def torch_call(examples):
        if "labels" not in examples[0]:  # training batches (eval examples carry fixed labels)
            seen.extend(hashlib.sha1(str(list(e["input_ids"])).encode()).hexdigest() for e in examples)
        return call(examples)

    collator.torch_call = torch_call
    return collator


original_log = PreTrainer.log


def log(self, logs, start_time=None):
    if "loss" in logs and self._head_sums is not None:
        local_sums.append({"step": self.state.global_step, "sums": self._head_sums.tolist()})
    return original_log(self, logs, start_time)


train_module.build_collator = recording_collator
PreTrainer.log = log
trainer = train_module.main(sys.argv[1:], return_trainer=True)
rank = trainer.args.process_index
train_hash = hashlib.sha1(str(trainer.train_dataset["input_ids"][:]).encode()).hexdigest()
# DDP keeps the ranks' weights equal only if every gradient is averaged, the sentence head's second one too.
weights_hash = hashlib.sha1(b"".join(p.detach().float().numpy().tobytes()
                                     for p in trainer.model.parameters())).hexdigest()
with open(os.path.join(trainer.args.output_dir, f"rank{rank}.json"), "w") as f:
    json.dump({"rank": rank, "world_size": trainer.args.world_size, "train_hash": train_hash,
               "weights_hash": weights_hash, "seen": seen,
               "local_sums": local_sums, "log_history": trainer.state.log_history,
               "all_train": [hashlib.sha1(str(ids).encode()).hexdigest()
                             for ids in trainer.train_dataset["input_ids"][:]]}, f)
