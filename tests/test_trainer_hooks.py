"""util/trainer.py: the order in which hooks are called, and after_train on an error."""
from __future__ import annotations

import logging

import pytest

from util.trainer import HookBase, Trainer


class Recorder(HookBase):
    def __init__(self, name, calls):
        self.name, self.calls = name, calls

    def before_train(self):
        self.calls.append((self.name, "before_train"))

    def before_epoch(self):
        self.calls.append((self.name, "before_epoch", self.trainer.epoch))

    def after_step(self):
        self.calls.append((self.name, "after_step", self.trainer.global_step, self.trainer.step_metrics["loss"]))

    def after_epoch(self):
        self.trainer.log_stats[self.name] = self.trainer.epoch
        self.calls.append((self.name, "after_epoch", dict(self.trainer.log_stats)))

    def after_train(self):
        self.calls.append((self.name, "after_train"))


def _trainer(train_epoch, start_epoch=1, max_epochs=3):
    return Trainer(args=None, model=None, model_without_ddp=None, criterion=None, postprocessors=None,
                   optimizer=None, lr_scheduler=None, scaler=None, loaders={"train": [0, 1]}, base_ds=None,
                   device=None, logger=logging.getLogger("test_trainer"), output_dir="", best_holder=None,
                   n_parameters=0, start_epoch=start_epoch, max_epochs=max_epochs, train_epoch=train_epoch)


def test_hooks_run_in_order_around_each_epoch_and_step():
    calls = []

    def train_epoch(trainer):
        for it in range(2):
            trainer.run_after_step(it, {"loss": 10 * trainer.epoch + it})
        return {"loss": float(trainer.epoch)}

    trainer = _trainer(train_epoch)
    trainer.register_hooks([Recorder("a", calls), None, Recorder("b", calls)])
    last = trainer.train()
    assert last == {"train_loss": 2.0, "a": 2, "b": 2}
    assert calls[:2] == [("a", "before_train"), ("b", "before_train")]
    epoch1 = calls[2:10]
    assert epoch1 == [("a", "before_epoch", 1), ("b", "before_epoch", 1),
                      ("a", "after_step", 2, 10), ("b", "after_step", 2, 10),
                      ("a", "after_step", 3, 11), ("b", "after_step", 3, 11),
                      ("a", "after_epoch", {"train_loss": 1.0, "a": 1}),
                      ("b", "after_epoch", {"train_loss": 1.0, "a": 1, "b": 1})]
    assert calls[-2:] == [("a", "after_train"), ("b", "after_train")]
    assert len(calls) == 2 + 2 * 8 + 2


def test_after_train_runs_when_training_fails_and_nothing_to_do_is_logged(caplog):
    calls = []

    def failing(trainer):
        raise RuntimeError("diverged")

    trainer = _trainer(failing)
    trainer.register_hooks([Recorder("a", calls)])
    with pytest.raises(RuntimeError, match="diverged"):
        trainer.train()
    assert calls == [("a", "before_train"), ("a", "before_epoch", 1), ("a", "after_train")]

    done = _trainer(failing, start_epoch=3, max_epochs=3)
    with caplog.at_level(logging.INFO, logger="test_trainer"):
        assert done.train() == {}
    assert "Nothing to train: the checkpoint is at epoch 2 and epochs=3" in caplog.text
