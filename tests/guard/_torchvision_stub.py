"""A stand-in `torchvision` (no CPU build exists for torch 2.13), imported by the timm test's
child process before timm: every attribute is a distinct inert class, so timm's import-time
tables build. Never imported by the test process itself (other libraries probe torchvision).
"""
# ruff: noqa
import sys, types, importlib.abc, importlib.machinery
class _Any(type):
    def __getattr__(cls, name):
        if name.startswith("__"): raise AttributeError(name)
        sub = _Any(name, (cls,), {}); setattr(cls, name, sub); return sub
class Dummy(metaclass=_Any):
    def __init__(self, *a, **k): pass
class Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
    def create_module(self, spec):
        m = types.ModuleType(spec.name); m.__path__ = []
        m.__getattr__ = lambda attr: getattr(Dummy, attr)
        return m
    def exec_module(self, m): pass
sys.meta_path.insert(0, Finder())
