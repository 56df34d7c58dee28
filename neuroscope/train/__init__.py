"""Training a CharRNN on a text: stateful truncated BPTT over parallel streams, Adam, best weights kept.

    >>> config = TrainConfig(cell="lstm", layers=2, hidden=128, steps=2000)
    >>> ckpt = train(read_text("warpeace.txt"), config, out="wp.pt")    # -> Checkpoint (best weights)
    >>> ckpt.train["test_loss_nats"], ckpt.train["samples"]["2000"]
    >>> ckpt = train(text, replace(config, steps=4000), out="wp.pt", resume=True)   # continue to step 4000

How it trains (the recipe of the reference checkpoints, ../shared/models/README.md):
- the text is split 80/10/10 by character index (text.split_span); the vocabulary is every
  character of the whole text;
- the training split is cut into B contiguous streams; each step reads the next window of T
  characters of every stream ([B, T] ids) and carries the recurrent state from window to window
  (detached: gradients flow back at most T characters). At the end of the streams, a new epoch
  starts from a zero state;
- Adam, gradient norm clipped at `clip`, learning rate halved when a validation loss fails to beat
  the best so far (torch's ReduceLROnPlateau, patience 0);
- every `eval_every` steps (and at the last step) the loss on the first `val_chars` characters
  of the validation split is measured; the weights with the best such loss are what `out` holds;
- samples (temperature 1) at the steps in `sample_at` and at every evaluation go into
  ckpt.train["samples"] keyed by step (str): the "how the samples evolve" series;
- at the end, the best weights are evaluated on the whole test split (one stream, as
  `neuroscope eval --split test` does), and the first 20k characters of the test split are stored
  as ckpt.extra["excerpt"], so later commands work without a text file.

`out` is written atomically at every evaluation and at the end, so a killed run leaves the last
good file; Ctrl-C lets the current step finish, writes `out`, then raises KeyboardInterrupt. One run
writes `out` at a time (files.WriterLock, held from the first read to the last write): a second is
refused at once. `out` also holds what `resume=True` needs (ckpt.extra["resume"]: the current weights,
Adam's and the scheduler's state, the step, the stream position and carried state, the RNG states):
tensors and plain containers only, so it loads with weights_only=True. A file is untrusted input, so
every entry of it is checked against the model and the data before use (`resumed_config`,
`Trainer.load_resume_state`), each refusal one line naming the entry.

What train writes, every command reads: the settings are checked against the limits that loading a
checkpoint enforces before the first step (TrainConfig.check); a run whose validation loss turns NaN
stops instead of storing it; a run stopped before its first step writes nothing and says so.

The package: `_run` (train, Run, run_steps: the loop, the record, the writes), `_trainer` (Trainer: one
step, and the state to resume from), `_resume` (a stored resume state, checked), `_corpus`
(stdlib_corpus). It imports config, text, model, checkpoint, evaluate and files; nothing imports it
but the CLI and demo.
"""
from ..config import SAMPLE_AT, TrainConfig
from ._corpus import stdlib_corpus
from ._run import Run, run_steps, text_fingerprint, train
from ._sweep import Spec, Task, read_spec, run_sweep, run_task
from ._trainer import DeferredInterrupt, Trainer, pick_device

__all__ = ["SAMPLE_AT", "DeferredInterrupt", "Run", "Spec", "Task", "TrainConfig", "Trainer", "read_spec", "run_sweep", "run_task", "pick_device", "run_steps",
           "stdlib_corpus", "text_fingerprint", "train"]
