"""Cloze prompts -> the model's top-k fill-mask predictions, to see the adaptation in words."""

import torch
from transformers import TrainerCallback


def fill_mask(model, tokenizer, prompts: list[str], top_k: int = 5) -> list[list[tuple[str, float]]]:
    """Top-k tokens and probabilities for the first mask of each prompt.

    Args:
        model: A model with an MLM head (pre-training or masked-LM class).
        tokenizer: Its tokenizer.
        prompts: Texts with one mask each, written `[MASK]` or as the tokenizer's own mask token (RoBERTa's
            `<mask>`): `[MASK]` becomes the tokenizer's, so one recipe's probes serve every family.
        top_k: How many predictions per prompt.
    """
    was_training = model.training
    model.eval()
    try:
        texts = [prompt.replace("[MASK]", tokenizer.mask_token) for prompt in prompts]
        encoded = tokenizer(texts, return_tensors="pt", padding=True).to(model.device)
        with torch.no_grad():
            out = model(**encoded)
        logits = out.prediction_logits if hasattr(out, "prediction_logits") else out.logits
        results = []
        for row, ids in enumerate(encoded["input_ids"]):
            where = (ids == tokenizer.mask_token_id).nonzero()
            if len(where) == 0:
                results.append([])
                continue
            probs = logits[row, where[0, 0]].float().softmax(-1)
            values, indices = probs.topk(top_k)
            results.append([(tokenizer.convert_ids_to_tokens(int(i)), round(float(v), 4))
                            for v, i in zip(values, indices)])
        return results
    finally:
        model.train(was_training)


def format_predictions(predictions: list[tuple[str, float]]) -> str:
    return ", ".join(f"{token} ({p:.0%})" for token, p in predictions)


class ProbeCallback(TrainerCallback):
    """Runs the probes at every evaluation, prints them, and keeps their history for the report."""

    def __init__(self, tokenizer, prompts: list[str], top_k: int = 5):
        self.tokenizer, self.prompts, self.top_k = tokenizer, prompts, top_k
        self.history: list[dict] = []
        self.printed: set[int] = set()

    def run(self, model, step: int) -> list[list[tuple[str, float]]]:
        if self.history and self.history[-1]["step"] == step:  # already probed at this step
            return list(self.history[-1]["predictions"].values())
        predictions = fill_mask(model, self.tokenizer, self.prompts, self.top_k)
        self.history.append({"step": step, "predictions": dict(zip(self.prompts, predictions))})
        return predictions

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        if not self.prompts or model is None or not state.is_world_process_zero:
            return
        if state.global_step in self.printed:
            return  # a scheduled evaluation and the final one can fall on the same step
        self.printed.add(state.global_step)
        for prompt, predictions in zip(self.prompts, self.run(model, state.global_step)):
            print(f"probe @ step {state.global_step}: {prompt} -> {format_predictions(predictions)}")
