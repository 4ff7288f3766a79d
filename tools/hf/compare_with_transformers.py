#!/usr/bin/env python3
"""Check ScaleGPT's GPT-2 against Hugging Face transformers on the same weights, both ways.

1. export: a ScaleGPT checkpoint is exported (scalegpt-hf export), loaded with
   transformers.GPT2LMHeadModel, and both compute the logits of the same tokens.
2. import: transformers initialises a random GPT-2 (untied and tied) and saves it with
   save_pretrained; ScaleGPT imports it (scalegpt-hf logits) and both compute logits.

Needs torch and transformers (the GPU machine has them; nothing here needs a GPU).
Usage: compare_with_transformers.py --bin build/cpu/tools/hf/scalegpt-hf --checkpoint CKPT --work DIR
Prints the largest absolute and relative logit differences and exits 1 above --tol.
"""
import argparse
import os
import subprocess
import sys

import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel


def hf_logits(model_dir, tokens):
    try:
        model = GPT2LMHeadModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    except TypeError:  # transformers before 4.56 calls it torch_dtype
        model = GPT2LMHeadModel.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits[0].double().numpy()


def scalegpt_logits(binary, model_dir, tokens, out):
    subprocess.run([binary, "logits", "--hf", model_dir, "--tokens", ",".join(map(str, tokens)), "--out", out],
                   check=True)
    return np.fromfile(out, dtype=np.float32).astype(np.float64).reshape(len(tokens), -1)


def report(name, a, b, tol):
    diff = np.abs(a - b).max()
    rel = diff / np.abs(b).max()
    same_argmax = (a.argmax(-1) == b.argmax(-1)).mean()
    ok = rel < tol
    print(f"{name}: logits {a.shape}, max |diff| {diff:.3e}, relative to max |logit| {rel:.3e}, "
          f"same argmax at {100 * same_argmax:.1f}% of positions -> {'OK' if ok else 'MISMATCH'}")
    return ok


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--tol", type=float, default=1e-4)
    a = p.parse_args()
    os.makedirs(a.work, exist_ok=True)
    ok = True

    exported = os.path.join(a.work, "exported")
    subprocess.run([a.bin, "export", "--checkpoint", a.checkpoint, "--out", exported], check=True)
    tokens = list(b"The bird sees the old fox near the river. Where is the girl?")
    ours = scalegpt_logits(a.bin, exported, tokens, os.path.join(a.work, "ours_export.f32"))
    ok &= report("export (ScaleGPT model -> transformers)", ours, hf_logits(exported, tokens), a.tol)

    torch.manual_seed(0)
    for tied in (True, False):
        cfg = GPT2Config(vocab_size=1500, n_positions=64, n_embd=96, n_layer=3, n_head=4,
                         tie_word_embeddings=tied, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)
        model = GPT2LMHeadModel(cfg).eval()
        with torch.no_grad():  # make the biases and LayerNorms non-trivial too
            for name, prm in model.named_parameters():
                if "ln" in name or "bias" in name:
                    prm.add_(0.1 * torch.randn_like(prm))
        d = os.path.join(a.work, f"hf_random_{'tied' if tied else 'untied'}")
        model.save_pretrained(d, safe_serialization=True)
        toks = torch.randint(0, cfg.vocab_size, (40,)).tolist()
        ours = scalegpt_logits(a.bin, d, toks, os.path.join(a.work, "ours_import.f32"))
        ok &= report(f"import (transformers model -> ScaleGPT), tied={tied}", ours, hf_logits(d, toks), a.tol)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
