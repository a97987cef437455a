"""What document-aware attention costs on one GPU: forward+backward of the 124M preset (bf16,
micro-batch 32, seq 2048, documents every 300 tokens) with no position ids, monotonic position
ids, per-document position ids, an explicit block-diagonal mask, and both.

    LIGER=1 python bench/doc_attention_gpu.py      (LIGER=0: without liger-kernel)

Per-document position ids alone already cost as much as the mask: transformers >= 5 detects
packed sequences from position ids that restart (with use_cache=False) and builds the same
block-diagonal causal mask for SDPA.
"""
import os, sys, time, torch
sys.path.insert(0, os.getcwd())
if os.environ.get("LIGER") == "1":
    from liger_kernel.transformers import apply_liger_kernel_to_llama
    apply_liger_kernel_to_llama(rope=True, rms_norm=True, swiglu=True, cross_entropy=False, fused_linear_cross_entropy=True)
from train.model import build_model
tok = {"vocab_size": 32000, "bos_id": 1, "eos_id": 2}
m = build_model("124m", tok, 2048).cuda().to(torch.bfloat16)
B, L = 32, 2048
x = torch.randint(3, 32000, (B, L), device="cuda")
ar = torch.arange(L, device="cuda")
starts = torch.zeros(B, L, dtype=torch.bool, device="cuda"); starts[:, ::300] = True
pos_reset = ar - torch.where(starts, ar, 0).cummax(1).values
seg = starts.cumsum(1)
mask = ((seg[:, :, None] == seg[:, None, :]) & torch.ones(L, L, dtype=torch.bool, device="cuda").tril())[:, None]
cases = {"none": {}, "pos_arange": {"position_ids": ar.expand(B, L)}, "pos_arange_1L": {"position_ids": ar[None]},
         "pos_reset": {"position_ids": pos_reset}, "mask_only": {"attention_mask": mask},
         "mask+pos": {"position_ids": pos_reset, "attention_mask": mask}}
for name, kw in cases.items():
    ts = []
    for i in range(13):
        torch.cuda.synchronize(); t = time.perf_counter()
        loss = m(input_ids=x, labels=x, use_cache=False, **kw).loss
        loss.backward()
        torch.cuda.synchronize(); ts.append(time.perf_counter() - t)
    ms = sum(ts[3:]) / 10 * 1000
    print(f"liger={os.environ.get('LIGER')} {name:14s} {ms:7.1f} ms/step  {B*L/ms*1000:10,.0f} tok/s", flush=True)
