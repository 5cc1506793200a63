"""Two checkpoints + a labelled file of the user's task -> each one's task metric, fine-tuned the same way.

    bert-pretrain probe --task_file tickets.csv --model_name_or_path outputs/run --baseline_model BASE [--output_dir D]

Prints accuracy and macro-F1 (entity F1 and word accuracy for tags) of each as mean ± spread over task_seeds
seeds; with an output_dir (recipe or command line), writes them to task_probe.json and task_probe.png there too.
"""

import json
import os

from pipeline.arguments import ProbeArguments, parse_args
from pipeline.build import build_task
from pipeline.errors import UsageError
from pipeline.finetune import format_task, probe_task
from pipeline.report import plot_task


def main(argv: list[str] | None = None) -> dict:
    argv = list(argv or [])
    model_args, data_args, training_args, probe_args = parse_args(
        argv, prog="bert-pretrain probe", extra=(ProbeArguments,), needs_output_dir=False)
    if not data_args.task_file:
        raise UsageError("probe needs a labelled file of your task; add --task_file FILE (csv, jsonl or parquet "
                         "with text and label columns).")
    task, budget = build_task(data_args, training_args)
    print(task.describe())
    result = probe_task(task, {"baseline": probe_args.baseline_model, "adapted": model_args.model_name_or_path},
                        budget, seed=training_args.seed, progress=not training_args.disable_tqdm)
    print(format_task(result))
    if training_args.output_dir:  # set in the recipe or on the command line
        os.makedirs(training_args.output_dir, exist_ok=True)
        with open(os.path.join(training_args.output_dir, "task_probe.json"), "w") as f:
            json.dump(result, f, indent=2)
        plot_task(result, os.path.join(training_args.output_dir, "task_probe.png"))
    return result
