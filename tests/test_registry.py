import pytest
import torch.nn as nn

from models.registry import ARCH_REGISTRY, Registry, build_network


def test_register_and_build():
    reg = Registry("test", "models.archs")

    @reg.register()
    class Tiny(nn.Module):
        def __init__(self, width: int = 4) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, width, 3)

    assert reg.get("Tiny") is Tiny
    with pytest.raises(KeyError, match="already registered"):
        reg.register("Tiny")(nn.Identity)


def test_unknown_name_lists_known_ones():
    with pytest.raises(KeyError, match="no 'NoSuchNet'"):
        ARCH_REGISTRY.get("NoSuchNet")


def test_build_network_needs_type():
    with pytest.raises(ValueError, match="'type'"):
        build_network({"width": 3})


def test_arch_modules_load_lazily():
    import subprocess
    import sys

    code = "import sys, models, models.registry; print(any(m.startswith('models.archs.') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
