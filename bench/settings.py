"""Sizes of every benchmark, for the full run and for ``--quick`` (seconds, for tests)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Settings:
    quick: bool
    threads: int = 1  # intra-op threads for everything except the latency sweep
    # 1. hook overhead
    hook_model: str = "resnet56_cifar"
    hook_batch: int = 64
    hook_steps: int = 1  # training steps per variant per round
    hook_rounds: int = 30
    # 2. thinning; (name, input side) -- names without ':' come from prunecli.models
    thin_models: tuple[tuple[str, int], ...] = (
        ("resnet56_cifar", 32),  # first: NNI's default tracer is probed on the first model
        ("torchvision:resnet50", 224),
        ("torchvision:mobilenet_v2", 224),
        ("torchvision:densenet121", 224),
    )
    thin_rounds: int = 3
    nni: bool = True
    # 3. latency of thinned models (names from thin_models)
    latency_models: tuple[str, ...] = ("resnet56_cifar", "torchvision:mobilenet_v2", "torchvision:resnet50")
    latency_threads: tuple[int, ...] = (1, 2)
    latency_batches: tuple[int, ...] = (1, 16, 64)
    latency_rounds: int = 3
    latency_budget_s: float = 0.5  # time per measurement, repeated forwards up to this
    # 6. deployment: round_to=8 + folded BatchNorm, PyTorch eager and ONNX Runtime; export
    deploy_models: tuple[str, ...] = ("resnet56_cifar", "torchvision:resnet50", "torchvision:mobilenet_v2")
    deploy_batch: int = 16
    deploy_rounds: int = 3
    deploy_budget_s: float = 0.5
    deploy_formats: tuple[str, ...] = ("onnx", "exported-program")
    # 4. the application's own cost
    app_quickstart_epochs: int = 12  # the quickstart up to (not including) its thinning epoch
    app_epochs: int = 3
    app_train_size: int = 1024
    app_rounds: int = 3
    # 5. accuracy on digits
    acc_seeds: tuple[int, ...] = (0, 1, 2)
    acc_pretrain_epochs: int = 4
    acc_prune_epochs: int = 6
    acc_finetune_epochs: int = 6
    acc_max_steps: int | None = None  # cut every epoch to this many minibatches
    # 6. transformers with LayerNorm channels pruned; (name, input side)
    norm_models: tuple[tuple[str, int], ...] = (
        ("torchvision:convnext_tiny", 224),
        ("torchvision:vit_b_16", 224),
        ("torchvision:swin_t", 224),
    )

    # 7. quantization: post-training int8, pruned + int8, NNI's QAT
    quant_rounds: int = 15
    quant_batch: int = 16
    quant_calib_batches: int = 8
    quant_nni_epochs: int = 1
    quant_cifar_epochs: int = 5  # resnet20_cifar trained on digits brought to 3x32x32
    quant_cifar_max_steps: int | None = None

    def describe(self) -> str:
        items = ", ".join(f"{k}={v}" for k, v in asdict(self).items())
        return f"`{items}`"


FULL = Settings(quick=False)

QUICK = Settings(
    quick=True,
    hook_model="resnet20_cifar",
    hook_batch=8,
    hook_steps=1,
    hook_rounds=3,
    thin_models=(("resnet20_cifar", 32), ("torchvision:mobilenet_v2", 64)),
    thin_rounds=1,
    nni=False,
    latency_models=("resnet20_cifar",),
    latency_threads=(1,),
    latency_batches=(1, 16),
    latency_rounds=2,
    latency_budget_s=0.05,
    deploy_models=("resnet20_cifar",),
    deploy_rounds=1,
    deploy_budget_s=0.05,
    deploy_formats=("onnx",),
    app_quickstart_epochs=1,
    app_epochs=1,
    app_train_size=128,
    app_rounds=1,
    acc_seeds=(0,),
    acc_pretrain_epochs=1,
    acc_prune_epochs=2,
    acc_finetune_epochs=1,
    acc_max_steps=4,
    norm_models=(("torchvision:convnext_tiny", 32),),
    quant_rounds=2,
    quant_calib_batches=2,
    quant_cifar_epochs=1,
    quant_cifar_max_steps=4,
)
