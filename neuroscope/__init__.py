"""neuroscope: look inside trained character-level recurrent language models.

    >>> import neuroscope as ns
    >>> ckpt = ns.load_checkpoint("wp_lstm3x512.pt")
    >>> text = ns.read_text("warpeace.txt")
"""
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .errors import UserError
from .model import CharRNN, ModelConfig
from .text import Vocab, read_text, select_span, split_span

__version__ = "0.1.0"

__all__ = ["Checkpoint", "CharRNN", "ModelConfig", "UserError", "Vocab", "load_checkpoint",
           "read_text", "save_checkpoint", "select_span", "split_span", "__version__"]
