"""Train seviz's demo model (SE-ResNet-50 blocks, CIFAR stem) on CIFAR-10.

Usage (from the repository root, CIFAR-10 JPEG tree unpacked from
``../shared/datasets/cifar10-jpeg.tar.gz``)::

    python data/train_demo_model.py --cifar DIR --epochs 18 --out data/

The shipped weights were trained in two phases (see ``training.commands`` in
``data/se_resnet50_cifar10.json``): 3 epochs of an 18-epoch schedule
(``--stop-after 3``), then 11 epochs of a fresh schedule from those weights
(``--init-from``).

Seeded and resumable: a checkpoint is written after every epoch to
``--checkpoint`` and a rerun continues from it. The result is
``se_resnet50_cifar10.safetensors`` and ``se_resnet50_cifar10.json`` (class
names, preprocessing and the training record: epochs, test accuracy, time).

Recipe: SGD with Nesterov momentum, one-cycle learning rate, label smoothing
0.1, random crop (4-pixel reflect padding) and horizontal flip, bf16 autocast
and channels-last on CPUs that support it.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from seviz.models.demo_network import (
    CIFAR10_CLASSES,
    CIFAR10_MEAN,
    CIFAR10_STD,
    DEMO_MODEL_NAME,
    build_demo_model,
    demo_pretrained_cfg,
)

log = logging.getLogger("train_demo_model")


def load_split(root: Path, split: str, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """Decode one split into uint8 (N, 32, 32, 3) images and int64 labels, cached as .npz."""
    cached = cache / f"cifar10_{split}.npz"
    if cached.is_file():
        with np.load(cached) as arrays:
            return arrays["images"], arrays["labels"]
    images, labels = [], []
    for label, name in enumerate(CIFAR10_CLASSES):
        for path in sorted((root / split / name).glob("*.jpg")):
            with Image.open(path) as image:
                images.append(np.asarray(image.convert("RGB")))
            labels.append(label)
    image_array, label_array = np.stack(images), np.asarray(labels, dtype=np.int64)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(cached, images=image_array, labels=label_array)
    return image_array, label_array


def to_normalized_tensor(images: np.ndarray) -> torch.Tensor:
    tensor = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    return ((tensor - mean) / std).contiguous(memory_format=torch.channels_last)


def augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random 32x32 crop from a 4-pixel reflect-padded image, and random horizontal flip."""
    n = batch.shape[0]
    padded = F.pad(batch, (4, 4, 4, 4), mode="reflect")
    offsets = torch.randint(0, 9, (n, 2), generator=generator).tolist()
    cropped = torch.stack([padded[i, :, dy : dy + 32, dx : dx + 32] for i, (dy, dx) in enumerate(offsets)])
    flip = torch.rand(n, generator=generator) < 0.5
    cropped[flip] = cropped[flip].flip(3)
    return cropped.contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def evaluate(model, images: torch.Tensor, labels: torch.Tensor, use_bf16: bool) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(images), 500):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            logits = model(images[start : start + 500])
        correct += (logits.argmax(1) == labels[start : start + 500]).sum().item()
    return correct / len(images)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--cifar", type=Path, required=True, help="unpacked CIFAR-10 JPEG tree (train/, test/)"
    )
    parser.add_argument("--out", type=Path, default=Path("data"))
    parser.add_argument("--epochs", type=int, default=18)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.2)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint", type=Path, default=Path("demo_train_checkpoint.pt"))
    parser.add_argument("--cache", type=Path, default=Path(".cache/cifar10"))
    parser.add_argument("--no-bf16", action="store_true", help="train in fp32 even where bf16 is supported")
    parser.add_argument(
        "--stop-after", type=int, default=None, help="stop (with a checkpoint) after this epoch"
    )
    parser.add_argument(
        "--pct-start", type=float, default=0.25, help="share of the schedule spent warming up"
    )
    parser.add_argument(
        "--init-from",
        type=Path,
        default=None,
        help="start from the model weights of another run's checkpoint, with a fresh schedule",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    use_bf16 = not args.no_bf16 and torch.backends.mkldnn.is_available()

    train_x, train_y = load_split(args.cifar, "train", args.cache)
    test_x, test_y = load_split(args.cifar, "test", args.cache)
    train_images, train_labels = to_normalized_tensor(train_x), torch.from_numpy(train_y)
    test_images, test_labels = to_normalized_tensor(test_x), torch.from_numpy(test_y)
    log.info("train %s, test %s, bf16=%s", tuple(train_images.shape), tuple(test_images.shape), use_bf16)

    model = build_demo_model().to(memory_format=torch.channels_last)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.SGD(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        momentum=0.9,
        nesterov=True,
    )
    steps_per_epoch = len(train_images) // args.batch_size
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch, pct_start=args.pct_start
    )
    generator = torch.Generator().manual_seed(args.seed)
    start_epoch, history, elapsed = 0, [], 0.0
    if args.init_from is not None and not args.checkpoint.is_file():
        earlier = torch.load(args.init_from, weights_only=True)
        model.load_state_dict(earlier["model"])
        history = [dict(h, phase="init") for h in earlier["history"]]
        elapsed = earlier["elapsed"]
        log.info("initialised from %s (%d earlier epochs)", args.init_from, len(history))
    if args.checkpoint.is_file():
        state = torch.load(args.checkpoint, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        start_epoch, history, elapsed = state["epoch"], state["history"], state["elapsed"]
        log.info("resumed after epoch %d", start_epoch)

    for epoch in range(start_epoch, args.epochs):
        began = time.time()
        model.train()
        order = torch.randperm(len(train_images), generator=generator)
        total_loss = 0.0
        for step in range(steps_per_epoch):
            index = order[step * args.batch_size : (step + 1) * args.batch_size]
            batch = augment(train_images[index], generator)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                loss = F.cross_entropy(model(batch), train_labels[index], label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += loss.item()
            if step % 100 == 0:
                log.info("epoch %d step %d/%d loss %.4f", epoch + 1, step, steps_per_epoch, loss.item())
        accuracy = evaluate(model, test_images, test_labels, use_bf16)
        elapsed += time.time() - began
        history.append(
            {"epoch": epoch + 1, "phase": "main", "loss": total_loss / steps_per_epoch, "test_top1": accuracy}
        )
        log.info(
            "epoch %d loss %.4f test top-1 %.4f (%.0f s total)",
            epoch + 1,
            history[-1]["loss"],
            accuracy,
            elapsed,
        )
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "generator": generator.get_state(),
                "epoch": epoch + 1,
                "history": history,
                "elapsed": elapsed,
            },
            args.checkpoint,
        )
        if args.stop_after is not None and epoch + 1 >= args.stop_after:
            log.info(
                "stopping after epoch %d (--stop-after); continue with --init-from %s",
                epoch + 1,
                args.checkpoint,
            )
            return

    from safetensors.torch import save_file

    model.eval()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    args.out.mkdir(parents=True, exist_ok=True)
    save_file(state, args.out / f"{DEMO_MODEL_NAME}.safetensors")
    fp32_accuracy = evaluate(model, test_images, test_labels, use_bf16=False)
    config = {
        "model": DEMO_MODEL_NAME,
        "architecture": "timm ResNet, Bottleneck, layers (3, 4, 6, 3), widths (16, 32, 64, 128), "
        "attn_layer='se', 3x3 stride-1 stem, no max-pool",
        "class_names": list(CIFAR10_CLASSES),
        "pretrained_cfg": demo_pretrained_cfg(),
        "training": {
            "command": "python data/train_demo_model.py "
            + " ".join(
                f"--{k.replace('_', '-')} {v}"
                for k, v in vars(args).items()
                if k in ("epochs", "batch_size", "lr", "seed", "threads", "pct_start", "init_from")
                and v is not None
            ),
            "dataset": "CIFAR-10 JPEG (shared/datasets/cifar10-jpeg.tar.gz), 50,000 train images",
            "epochs": args.epochs,
            "seconds": round(elapsed),
            "threads": args.threads,
            "bf16_autocast": use_bf16,
            "test_top1_fp32": fp32_accuracy,
            "history": history,
        },
    }
    (args.out / f"{DEMO_MODEL_NAME}.json").write_text(json.dumps(config, indent=2) + "\n")
    log.info("saved %s (fp32 test top-1 %.4f)", args.out, fp32_accuracy)


if __name__ == "__main__":
    main()
