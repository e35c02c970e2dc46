"""A user's own SE network with no preprocessing of its own, for the preprocessing tests (no downloads).

``write_user_model`` writes ``user_model.py`` (``--model FILE.py:FACTORY``), a timm
ResNet with one SE BasicBlock per stage (gates ``layerN.0.se.gate``, 8/16/24/32
channels), as a user's CIFAR-style model would be. Its factories:

* ``plain``: no ``pretrained_cfg`` / ``default_cfg`` at all (seviz falls back to ImageNet's);
* ``with_default_cfg``: a partial timm-style ``default_cfg`` (input 40x40, mean 0.1/0.2/0.3);
* ``with_pretrained_cfg_object``: timm's ``PretrainedCfg`` dataclass as ``pretrained_cfg``.

Each factory writes the file named by ``$SEVIZ_TEST_BUILT`` when called, so a test
can show that an error came before any model was built.
"""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

USER_GATES = {f"SE_{stage}_1": f"layer{stage - 1}.0.se.gate" for stage in (2, 3, 4, 5)}

USER_MODEL_SOURCE = textwrap.dedent(
    """
    import os
    from pathlib import Path

    from timm.models.resnet import BasicBlock, ResNet


    def plain(num_classes=2):
        marker = os.environ.get("SEVIZ_TEST_BUILT")
        if marker:
            Path(marker).write_text("built")
        return ResNet(
            block=BasicBlock,
            layers=(1, 1, 1, 1),
            channels=(8, 16, 24, 32),
            num_classes=num_classes,
            block_args={"attn_layer": "se"},
        )


    def with_default_cfg(num_classes=2):
        model = plain(num_classes)
        model.default_cfg = {"input_size": (3, 40, 40), "mean": (0.1, 0.2, 0.3), "url": "", "num_classes": 2}
        return model


    def with_pretrained_cfg_object(num_classes=2):
        from timm.models import PretrainedCfg

        model = plain(num_classes)
        model.pretrained_cfg = PretrainedCfg(input_size=(3, 48, 48), crop_pct=1.0, interpolation="bicubic")
        return model
    """
)


def write_user_model(folder: Path) -> Path:
    """Write ``user_model.py`` into ``folder``; returns its path."""
    path = Path(folder) / "user_model.py"
    path.write_text(USER_MODEL_SOURCE)
    return path


def build_user_model(path: Path, factory: str = "plain"):
    """Import ``path`` (as seviz does not: by hand) and call ``factory``."""
    spec = importlib.util.spec_from_file_location("hand_user_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, factory)()


def write_user_weights(model_path: Path, out: Path, seed: int = 0) -> Path:
    """Seeded weights for ``plain`` as a safetensors file, every BatchNorm live (not zero-initialised)."""
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = build_user_model(model_path)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.uniform_(module.bias, -0.2, 0.2)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out))
    return out
