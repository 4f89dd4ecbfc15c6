"""Network architectures, one per ``*_arch.py`` file, registered in ``models.registry.ARCH_REGISTRY``."""
