"""What a patch replaces: every state, one quantity, a set of units, or a set of dictionary latents.

    >>> target("all", config)                  # every h and c of every layer: the whole recurrent state
    >>> target("l1.c", config)                 # all units of layer 1's cell state
    >>> target(["l1.c.122", "l0.h.3"], config)  # those units only
    >>> target(["l1.c/d.12"], config, d)       # latent 12's part of the dictionary's shown value

Units are replaced where the recurrence keeps them: a c unit in the memory c_t (h_t = o_t * tanh(c_t)
then reads the new value through the base's own output gate), an h unit in h_t. A latent is replaced
where its dictionary reads the state (Dictionary.edit_point: tanh(c_t) as h reads it, or h_t), by moving
the state along its decoder row by the difference of the two texts' activations.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UserError
from ..names import parse_latent, parse_quantity, parse_unit, state_names


@dataclass(frozen=True)
class Target:
    """units: {quantity name: unit indices} replaced outright; latents: indices of `dictionary`'s latents."""

    units: dict = field(default_factory=dict)
    latents: tuple = ()
    dictionary: object = None
    label: str = ""

    def quantities(self) -> list[str]:
        """The quantities to record from the source: the units' own, and the dictionary's."""
        return list(self.units) + ([self.dictionary.quantity] if self.latents else [])

    @property
    def size(self) -> int:
        return sum(len(u) for u in self.units.values()) + len(self.latents)


def target(what, config, dictionary=None) -> Target:
    """A Target from "all" (or None), a quantity name ("l1.c", "rnn.l1.c"), or unit or latent ids."""
    if what is None or what == "all":
        names = state_names(config, ("h", "c"))
        return Target({n: tuple(range(config.hidden_size)) for n in names}, label="every state")
    if isinstance(what, str) and _is_quantity(what):
        q = parse_quantity(what)
        if q.name not in state_names(config, ("h", "c")):
            raise UserError(f"cannot patch {what!r}: this model has {', '.join(state_names(config, ('h', 'c')))}",
                            param="what")
        return Target({q.name: tuple(range(config.hidden_size))}, label=q.name)
    names = [what] if isinstance(what, str) else list(what)
    if not names:
        raise UserError("name at least one unit or latent to patch", param="what")
    if any("/d." in str(n) for n in names):
        return _latents(names, dictionary)
    return _units(names, config)


def _is_quantity(text: str) -> bool:
    try:
        parse_quantity(text)
    except UserError:
        return False
    return True


def _units(names, config) -> Target:
    units: dict[str, list[int]] = {}
    for name in names:
        u = parse_unit(str(name), config)
        if u.state not in ("h", "c"):
            raise UserError(f"cannot patch {u.id}: a patch replaces h or c, not a gate", param="what")
        units.setdefault(u.quantity, [])
        if u.index not in units[u.quantity]:
            units[u.quantity].append(u.index)
    return Target({q: tuple(v) for q, v in units.items()}, label=", ".join(map(str, names)))


def _latents(names, dictionary) -> Target:
    if dictionary is None:
        raise UserError("latents (l1.c/d.N) need the dictionary they belong to", param="dictionary")
    if not all("/d." in str(n) for n in names):
        raise UserError("patch units or latents, not both at once", param="what")
    latents = [parse_latent(str(n), dictionary.sae.d_sae) for n in names]
    wrong = [lat.id for lat in latents if lat.quantity != dictionary.quantity]
    if wrong:
        raise UserError(f"{wrong[0]} is not a latent of the dictionary over {dictionary.quantity}", param="what")
    return Target(latents=tuple(dict.fromkeys(lat.index for lat in latents)), dictionary=dictionary,
                  label=", ".join(map(str, names)))
