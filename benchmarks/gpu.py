"""GPU throughput of a BERT-base-sized BertForPreTraining: bf16, SDPA attention, fused AdamW, optional compile.

    python benchmarks/gpu.py [--compile]

Prints samples/s and model FLOPs utilisation (MFU) at sequence length 128 and 512.
Skips cleanly (exit 0) where there is no CUDA GPU.
"""

import argparse
import sys
import time

import torch

# Dense bf16 peak, TFLOP/s, by device name; MFU is reported against it.
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0, "V100": 125.0}


def peak_flops(name: str) -> float | None:
    return next((tflops * 1e12 for key, tflops in PEAK_TFLOPS.items() if key in name), None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("GPU benchmark skipped: no CUDA GPU on this machine.")
        return 0
    from transformers import BertConfig

    from pipeline.model import BertForPreTrainingSparse

    config = BertConfig(attn_implementation="sdpa")  # BERT-base: 12 layers, 768 hidden, 30,522 vocab
    name = torch.cuda.get_device_name()
    print(f"{name}, BERT-base, bf16 autocast, SDPA, fused AdamW{', torch.compile' if args.compile else ''}")
    for seq, batch in ((128, 256), (512, 64)):
        model = BertForPreTrainingSparse(config).cuda()
        step_model = torch.compile(model) if args.compile else model
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
        ids = torch.randint(1000, config.vocab_size, (batch, seq), device="cuda")
        labels = torch.where(torch.rand(batch, seq, device="cuda") < 0.15, ids, -100)
        nsp = torch.randint(0, 2, (batch,), device="cuda")
        for i in range(args.steps + 5):
            if i == 5:
                torch.cuda.synchronize()
                start = time.perf_counter()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = step_model(input_ids=ids, labels=labels, next_sentence_label=nsp).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        seconds = (time.perf_counter() - start) / args.steps
        h, layers, inter, vocab = config.hidden_size, config.num_hidden_layers, config.intermediate_size, config.vocab_size
        tokens, masked = batch * seq, int((labels != -100).sum())
        flops = 3 * (2 * layers * (4 * h * h + 2 * h * inter) * tokens + 4 * layers * h * seq * tokens
                     + 2 * (h * h + h * vocab) * masked)
        peak = peak_flops(name)
        mfu = f"{flops / seconds / peak:.1%}" if peak else "n/a (unknown peak)"
        print(f"  seq {seq:>3}, batch {batch:>3}: {batch / seconds:,.0f} samples/s, "
              f"{flops / seconds / 1e12:.1f} TFLOP/s, MFU {mfu}")
        del model, step_model, optimizer
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
