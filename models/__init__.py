"""Detection models. Importing the package registers every model builder."""
from .registry import MODULE_BUILD_FUNCS
from . import dino  # noqa: F401  (registers 'dino')


def build_model(args):
    """(model, criterion, postprocessors) for `args.modelname`.

    Class counts still 'auto' here (main.py settles them from the data or the checkpoint before
    building) are the COCO model's 91, as the original's configs set them: a model built from a
    config alone (benchmarks, tests, the parity checkers, a user's own script) is the COCO one."""
    from util.args import fill_auto_class_counts
    fill_auto_class_counts(args)
    return MODULE_BUILD_FUNCS.get(args.modelname)(args)
