"""Dictionary features: TopK sparse autoencoders over a recorded quantity of a char-RNN.

    >>> from neuroscope.dictionary import train_dictionary, load_dictionary, held_out_quality
    >>> d = train_dictionary(ckpt.model, ids, "rnn.l1.c", "dict/", latents=4096, k=32, held_out=test_ids)
    >>> d.info["held_out"]["fvu"], d.info["held_out"]["loss_recovered"]
    >>> d = load_dictionary("dict/", ckpt.model)       # refused unless trained on this model's weights
    >>> z = d.sae.encode(torch.tanh(c))                # latents [n, 4096], at most k on per row

A latent is named like a unit with "/d" after its quantity: `l1.c/d.123` is latent 123 of the dictionary
over rnn.l1.c (neuroscope.names). The folder is SAELens' layout (cfg.json, sae_weights.safetensors).
"""
from ..config import DictionaryConfig
from ._folder import (Dictionary, DictionaryError, as_dictionary, check_fits, load_dictionary, model_fingerprint,
                      save_dictionary)
from ._latents import iter_latents, latent_quantiles, latent_values, latents_of, most_variable_latents
from ._quality import held_out_quality, unshow
from ._sae import TopKSAE
from ._steer import latent_zeroed_losses, parse_steer, steered
from ._train import train_dictionary

__all__ = ["Dictionary", "DictionaryConfig", "DictionaryError", "TopKSAE", "as_dictionary", "check_fits",
           "held_out_quality", "iter_latents", "latent_quantiles", "latent_values", "latent_zeroed_losses",
           "latents_of", "load_dictionary", "model_fingerprint", "most_variable_latents", "parse_steer",
           "save_dictionary", "steered", "train_dictionary", "unshow"]
