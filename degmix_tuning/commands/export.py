"""`degmix-tuning export RUN --format peft OUT`: a run of a peft-backed method in peft's own adapter format."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Write the adapter of a run tuned with lora, dora, loha, lokr or ia3 in peft's format, so plain `peft` loads it onto
the timm model inside the backbone slot (the same frozen weights):

  OUT/adapter_config.json        peft config: target_modules named in the timm model, base_model_name_or_path =
                                 the timm model's name
  OUT/adapter_model.safetensors  peft's tensors, keyed as PeftModel.save_pretrained writes them
  OUT/degmix_head.safetensors    the rest of the run: the DeGMix head (+ BatchNorm statistics), the slot's per-stage
                                 output norms (frozen; not in the timm model) and the run's config as metadata

Building the timm model: `timm.create_model(<base_model_name_or_path>, num_classes=0, ...)` with the run's frozen
weights. For the Swin slot add always_partition=True and strict_img_size=False; the slot pads like the official
(mmseg) code, so plain timm computes the same features where no padding is needed (every stage map a multiple of
the window: Swin-T at multiples of 224) and differs by design elsewhere. For BEiT/EVA-style attention set
qkv_bias_separate=True on every attention module (the command says when), or timm skips an adapter on qkv.

`degmix-tuning import-peft OUT --out RUN2` turns the folder back into a run (bit for bit).
RUN is a run folder, its adapter.safetensors or a checkpoint folder; its frozen backbone weights must be available
(they are rebuilt and checked, as for evaluate).
"""

EXAMPLE = """\
example:
  degmix-tuning export runs/lora_nyud --format peft exports/lora_nyud
  python -c "import timm, peft; m = timm.create_model('swin_tiny_patch4_window7_224', pretrained=True, \\
      num_classes=0, always_partition=True, strict_img_size=False); \\
      m = peft.PeftModel.from_pretrained(m, 'exports/lora_nyud')"
"""


def _run(args: argparse.Namespace) -> int:
    from ..peft_format import PEFT_WEIGHTS_NAME, REST_NAME, export_peft

    result = export_peft(args.run, args.out, overwrite=args.overwrite)
    print(
        f"exported {args.run} ({result.method}): {result.layers} adapted layers, {result.peft_tensors} tensors -> "
        f"{result.out_dir / PEFT_WEIGHTS_NAME} + adapter_config.json (base model {result.timm_name}); head and stage "
        f"norms ({result.rest_tensors} tensors) -> {result.out_dir / REST_NAME}"
    )
    if result.qkv_bias_separate:
        print("note: set qkv_bias_separate=True on every attention module of the timm model before loading it with "
              "peft (timm computes qkv with F.linear otherwise, which skips the adapter on qkv)")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "export", help="write a run's adapter in another library's format (peft)",
        description=DESCRIPTION, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", metavar="RUN", help="run folder, adapter.safetensors or checkpoint folder")
    p.add_argument("out", metavar="OUT", help="folder to write")
    p.add_argument("--format", required=True, choices=("peft",), help="the format to write")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in OUT")
    p.set_defaults(func=_run)
