"""Plain-torch reproduction: CPU `BatchNorm2d` backward is wrong at batch 1 for some channels-last-strided gradients.

Run: ``python benchmarks/batchnorm_batch1_grad_bug.py``. Exit code 1 while the bug is present, 0 once fixed.
Only torch is imported, so the file can be attached to an upstream (PyTorch) issue as it is.

Trigger, measured with torch 2.14.1 (CPU, float32 and float64 alike), all of these at once:
- batch size 1;
- the BN input is NCHW-contiguous (the default layout);
- the incoming gradient has channels-last strides for C, H, W (stride(C) = 1, stride(W) = C, stride(H) = W*C) but a
  batch stride smaller than C*H*W, e.g. C (what ``tokens[B, N, C].transpose(1, 2).view(B, C, H, W)`` gives at
  B = 1), 0 (an expanded gradient), 1 or 7. Batch stride C*H*W or larger is fine.
Train-mode and eval-mode BN are both hit. The input, weight and bias gradients are all wrong (relative error ~1-2,
i.e. garbage, not rounding), with no error or warning. The forward is correct.
Not triggered: batch 2 with the same strides; a channels-last input; an NCHW-strided gradient with any batch stride;
a channels-last gradient with padded rows or a channel stride of 2; a gradient `.contiguous()` copy.

Cause (aten/src/ATen/native/Normalization.cpp, `batch_norm_backward_cpu_template`): the fast kernel is taken when
``is_contiguous(input) && is_contiguous(grad_out)`` (contiguous in either memory format) and
``input.suggest_memory_format() == grad_out.suggest_memory_format()``. At batch 1 the gradient is
channels-last-contiguous (the stride of the size-1 batch dimension is ignored), so the first test passes. But
`suggest_memory_format()` rejects channels-last because the batch stride is smaller than C*H*W, and answers
Contiguous, the same as for the NCHW input. The fast kernel then reads the channels-last gradient buffer as NCHW.
"""

from __future__ import annotations

import sys

import torch

C, H, W = 16, 8, 10


def _grads(bn: torch.nn.BatchNorm2d, x: torch.Tensor, grad_out: torch.Tensor) -> list[torch.Tensor]:
    """d(input), d(weight), d(bias) of `bn` at `x` for the incoming gradient `grad_out`."""
    x = x.detach().requires_grad_()
    return list(torch.autograd.grad(bn(x), [x, bn.weight, bn.bias], grad_out))


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got - want).norm() / want.norm()).item()


def max_relative_error(train: bool, batch: int, batch_stride: int, channels_last_input: bool = False,
                       dtype=torch.float64) -> float:
    """Largest relative error of the BN gradients for a channels-last-strided `grad_out` vs a `.contiguous()` copy."""
    gen = torch.Generator().manual_seed(0)
    bn = torch.nn.BatchNorm2d(C).to(dtype).train(train)
    with torch.no_grad():  # running stats and affine parameters away from 0/1, so eval mode is not the identity
        bn.running_mean.uniform_(-1, 1, generator=gen)
        bn.running_var.uniform_(0.5, 2, generator=gen)
        bn.weight.uniform_(0.5, 2, generator=gen)
        bn.bias.uniform_(-1, 1, generator=gen)
    x = torch.randn(batch, C, H, W, dtype=dtype, generator=gen)
    if channels_last_input:
        x = x.contiguous(memory_format=torch.channels_last)
    storage = torch.randn(batch * C * H * W + batch_stride * batch, dtype=dtype, generator=gen)
    grad_out = storage.as_strided((batch, C, H, W), (batch_stride, 1, W * C, C))
    strided = _grads(bn, x, grad_out)
    reference = _grads(bn, x, grad_out.contiguous())
    return max(_relative_error(g, r) for g, r in zip(strided, reference))


def main() -> int:
    print(f"torch {torch.__version__}; BatchNorm2d({C}), input [B, {C}, {H}, {W}]; incoming gradient with "
          f"strides (batch_stride, 1, {W * C}, {C}) vs its .contiguous() copy")
    strides = ((C, "= C: tokens.transpose(1, 2)"), (0, "expanded"), (C * H * W, "= C*H*W"))
    buggy = False
    for train in (False, True):
        for batch in (1, 2):
            for channels_last_input in (False, True) if batch == 1 else (False,):
                for batch_stride, why in strides:
                    err = max_relative_error(train, batch, batch_stride, channels_last_input)
                    wrong = err > 1e-10
                    buggy |= wrong
                    mode = "train" if train else "eval"
                    layout = "channels-last" if channels_last_input else "NCHW"
                    print(f"  {mode:5s} batch {batch}  {layout:13s} input  grad batch stride {batch_stride:4d} "
                          f"({why:26s})  max rel. error of d(input, weight, bias) {err:.2e}  "
                          f"{'WRONG' if wrong else 'ok'}")
    print("BUG PRESENT: BatchNorm2d backward is wrong" if buggy else "fixed: all gradients agree")
    return 1 if buggy else 0


if __name__ == "__main__":
    sys.exit(main())
