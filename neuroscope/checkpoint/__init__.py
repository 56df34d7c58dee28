"""Model files in and out: neuroscope's own checkpoint (`_file`: the `plain-char-rnn/1` file, loaded as
untrusted input), models trained elsewhere brought in with a parity check (`_import`: a PyTorch
state_dict, `_keras`: a Keras 3 `.keras` model), and ours written out as ONNX (`_onnx`).

    >>> ckpt = load_checkpoint("wp_lstm3x512.pt")   # -> Checkpoint(model, vocab, config, train, extra)
    >>> imported = import_model("charlstm.pth", vocab="vocab.json")   # -> Imported(ckpt, parity, ...)
    >>> export_onnx(ckpt, "model.onnx")             # the step function, checked with onnxruntime
"""
from ._file import (FORMAT, MAX_CHECKPOINT_BYTES, Checkpoint, CheckpointError, TextSpan, atomic_save,
                    check_unpacked_size, checked_metadata, checked_tensor, checked_vocab, checked_weights,
                    checkpoint_from_dict, checkpoint_to_dict, choose_text, load_checkpoint, model_and_vocab,
                    save_checkpoint)

__all__ = ["FORMAT", "MAX_CHECKPOINT_BYTES", "Checkpoint", "CheckpointError", "TextSpan", "atomic_save",
           "check_unpacked_size", "checked_metadata", "checked_tensor", "checked_vocab", "checked_weights",
           "checkpoint_from_dict", "checkpoint_to_dict", "choose_text", "load_checkpoint", "model_and_vocab",
           "save_checkpoint"]
