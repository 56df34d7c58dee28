"""Recording: a model's per-character states over a text, in memory or in a store on disk.

    >>> for start, acts in iter_states(model, ids, states=("h", "c")):    # chunk by chunk (_states)
    ...     acts["rnn.l0.c"]                                             # float32 [n, H]
    >>> losses = char_losses(model, ids, [Intervention("rnn.l2.c", [323], "zero")])   # edited in the recurrence
    >>> acts = write_store("acts/", ckpt, span, states=("h", "c"), dtype="float16")   # to disk (_store)
    >>> open_store("acts/")["l2_c"]                                      # a memory-mapped .npy

`ns.record(model, ids)` is `record(...)`: every state of a short span in memory.
"""
from .. import callable_module
from ._states import (AUTO_EXACT_CHARS, AUTO_WARMUP, Intervention, auto_streams, char_losses, edited_losses,
                      every_unit, iter_blocks, iter_states, most_variable_units, parse_states, record, recorded_names,
                      shown_values, state_names, stream_layout, window_chars, zeroed_losses)
from ._store import Activations, StorePlan, check_disk, open_store, plan_store, write_store

__all__ = ["AUTO_EXACT_CHARS", "AUTO_WARMUP", "Activations", "Intervention", "StorePlan", "auto_streams",
           "char_losses", "check_disk", "edited_losses", "every_unit", "iter_blocks", "iter_states",
           "most_variable_units", "open_store", "parse_states", "plan_store", "record", "recorded_names",
           "shown_values", "state_names", "stream_layout", "window_chars", "write_store", "zeroed_losses"]

callable_module(__name__)
