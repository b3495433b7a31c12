"""Detection models. Importing the package registers every model builder."""
from .registry import MODULE_BUILD_FUNCS
from . import dino  # noqa: F401  (registers 'dino')


def build_model(args):
    """(model, criterion, postprocessors) for `args.modelname`."""
    return MODULE_BUILD_FUNCS.get(args.modelname)(args)
