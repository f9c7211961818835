"""The controller: an LSTM policy that writes architectures one decision at a time.

Decisions alternate: units of layer 1, activation of layer 1, units of layer 2,
and so on. Where a layer could start, the controller may instead choose *end*.
Every step works from logits; what a step may not choose is masked to minus
infinity before the softmax. Notebook 04 teaches this module.
"""

from __future__ import annotations

import io
import math
import numbers
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__
from .search_space import Architecture, Layer, SearchSpace

FORMAT_VERSION = 1
"""Version of the saved-controller format; a file of another version is refused."""


def load_weights_only(path: str | Path | io.BytesIO, what: str = "") -> Any:
    """Read a ``torch.save`` file that may hold only tensors and plain data.

    Loading never runs code from the file: PyTorch's weights-only unpickler
    refuses every other object, and so does this function, with a short reason.

    Parameters
    ----------
    path : path or BytesIO
    what : str, optional
        How error messages name the file (default: ``path``).

    Raises
    ------
    ValueError
        If the file is missing, damaged, or holds anything but weights and data.
    """
    what = what or str(path)
    try:
        with warnings.catch_warnings():
            # old pickle protocols draw a UserWarning that says nothing useful here
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported (global: GLOBAL \S+|operand \d+)", str(error))
        reason = found.group(0) if found else "not weights-only data"
        raise ValueError(
            f"refused to load {what}: it holds more than tensors and plain "
            f"data ({reason}), and unpickling it could run code"
        ) from None
    except Exception as error:  # noqa: BLE001 - any other reading failure
        raise ValueError(f"cannot load {what}: {error}") from None


@dataclass
class Sample:
    """A batch of decision sequences and what the policy said about them.

    Attributes
    ----------
    architectures : list of Architecture, length m
    decisions : LongTensor of shape (m, T)
        Token ids; -1 after end.
    log_probs : Tensor of shape (m, T)
        log p(a_t | a_<t); exactly 0 (and without gradient) after end.
    entropies : Tensor of shape (m, T)
        Entropy H_t of the distribution at step t; exactly 0 after end.
    made : BoolTensor of shape (m, T)
        True where a decision was made.
    """

    architectures: list[Architecture]
    decisions: torch.Tensor
    log_probs: torch.Tensor
    entropies: torch.Tensor
    made: torch.Tensor

    @property
    def sequence_log_probs(self) -> torch.Tensor:
        """sum_t log p(a_t | a_<t) per architecture, shape (m,)."""
        return self.log_probs.sum(dim=1)


class Controller(nn.Module):
    """LSTM policy over a search space.

    Token ids: 0 is the start token (input of the first step only), then one id
    per unit count, one per activation, and the last id is *end*. The output
    layer scores every token except start; a mask keeps the ones allowed.

    Parameters
    ----------
    space : SearchSpace
    hidden_size : int, default 32
        LSTM width. Two-moons policies are tiny distributions over 7 or 2
        choices per step; 32 units learn them in a few dozen episodes and keep
        an episode's controller work well under a millisecond per decision.
    num_layers : int, default 2
        Stacked LSTM layers (the report calls its controller multilayered).
    seed : int, default 0
        Seed of the initial weights; global random state is untouched.

    Examples
    --------
    >>> controller = Controller(SearchSpace(), seed=0)
    >>> sample = controller.sample(3, generator=torch.Generator().manual_seed(0))
    >>> len(sample.architectures), tuple(sample.log_probs.shape)
    (3, (3, 10))
    """

    def __init__(
        self,
        space: SearchSpace,
        hidden_size: int = 32,
        num_layers: int = 2,
        seed: int = 0,
    ) -> None:
        super().__init__()
        for name, value in (("hidden_size", hidden_size), ("num_layers", num_layers)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"{name} must be a positive integer, got {value!r}")
            if value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        self.space = space
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.num_units = len(space.units)
        self.num_tokens = 1 + self.num_units + len(space.activations) + 1
        self.end_token = self.num_tokens - 1

        # initialise from a private generator: global random state is left alone
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.embedding = nn.Embedding(self.num_tokens, self.hidden_size)
            self.lstm = nn.LSTM(self.hidden_size, self.hidden_size, self.num_layers)
            self.head = nn.Linear(self.hidden_size, self.num_tokens)

        unit_mask = torch.zeros(self.num_tokens, dtype=torch.bool)
        unit_mask[1 : 1 + self.num_units] = True
        unit_mask[self.end_token] = True
        activation_mask = torch.zeros(self.num_tokens, dtype=torch.bool)
        activation_mask[1 + self.num_units : self.end_token] = True
        self.register_buffer("unit_mask", unit_mask, persistent=False)
        self.register_buffer("activation_mask", activation_mask, persistent=False)

    # tokens ----------------------------------------------------------------

    def token_names(self) -> list[str]:
        """Readable name of every token id."""
        return [
            "start",
            *(str(u) for u in self.space.units),
            *self.space.activations,
            "end",
        ]

    def step_mask(self, step: int) -> torch.Tensor:
        """Tokens allowed at ``step``: units or end if even, activations if odd."""
        mask = self.activation_mask if step % 2 else self.unit_mask
        assert isinstance(mask, torch.Tensor)
        return mask

    def to_architecture(self, tokens: list[int]) -> Architecture:
        """Decode one sequence of token ids (stops at end or at -1)."""
        layers = []
        for i in range(0, len(tokens) - 1, 2):
            unit_token, activation_token = tokens[i], tokens[i + 1]
            if unit_token in (self.end_token, -1):
                break
            units = self.space.units[unit_token - 1]
            activation = self.space.activations[activation_token - 1 - self.num_units]
            layers.append(Layer(units, activation))
        return Architecture(tuple(layers))

    def to_tokens(self, arch: Architecture) -> list[int]:
        """Token ids for an architecture of this space, padded with -1."""
        self.space.check(arch)
        tokens: list[int] = []
        for layer in arch.layers:
            tokens.append(1 + self.space.units.index(layer.units))
            tokens.append(
                1 + self.num_units + self.space.activations.index(layer.activation)
            )
        if arch.depth < self.space.max_layers:
            tokens.append(self.end_token)
        return tokens + [-1] * (self.space.num_steps - len(tokens))

    # the policy --------------------------------------------------------------

    def step_logits(
        self,
        token: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor] | None,
        step: int,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One LSTM step: masked logits of shape (m, num_tokens) and the new state."""
        x = self.embedding(token).unsqueeze(0)  # (1, m, hidden)
        out, state = self.lstm(x, state)
        logits = self.head(out.squeeze(0))  # (m, num_tokens)
        logits = logits.masked_fill(~self.step_mask(step), -math.inf)
        return logits, state

    def _run(
        self,
        num: int,
        generator: torch.Generator | None,
        forced: torch.Tensor | None = None,
        greedy: bool = False,
    ) -> Sample:
        """Walk the policy for ``num`` sequences: sample, argmax or ``forced``."""
        token = torch.zeros(num, dtype=torch.long)
        state = None
        alive = torch.ones(num, dtype=torch.bool)
        decisions, log_probs, entropies, made = [], [], [], []
        for step in range(self.space.num_steps):
            logits, state = self.step_logits(token, state, step)
            log_p = torch.log_softmax(logits, dim=-1)
            p = log_p.exp()
            entropy = -(p * log_p.masked_fill(p == 0, 0.0)).sum(dim=-1)

            if forced is not None:
                choice = forced[:, step].clamp(min=0)
            elif greedy:
                choice = logits.argmax(dim=-1)
            else:
                choice = torch.multinomial(p.detach(), 1, generator=generator).squeeze(
                    1
                )

            chosen = log_p.gather(1, choice.unsqueeze(1)).squeeze(1)
            zero = torch.zeros(())
            decisions.append(torch.where(alive, choice, torch.full_like(choice, -1)))
            log_probs.append(torch.where(alive, chosen, zero))
            entropies.append(torch.where(alive, entropy, zero))
            made.append(alive.clone())

            # a sequence is over after end; later steps are padding
            alive = alive & (choice != self.end_token)
            token = torch.where(alive, choice, torch.zeros_like(choice))

        decision_tensor = torch.stack(decisions, dim=1)
        archs = [self.to_architecture(row) for row in decision_tensor.tolist()]
        return Sample(
            archs,
            decision_tensor,
            torch.stack(log_probs, dim=1),
            torch.stack(entropies, dim=1),
            torch.stack(made, dim=1),
        )

    def sample(self, num: int, generator: torch.Generator | None = None) -> Sample:
        """Sample ``num`` architectures (with gradients through log-probabilities).

        Parameters
        ----------
        num : int
            Batch size m.
        generator : torch.Generator, optional
            Source of randomness; pass one for reproducible samples.
        """
        return self._run(num, generator)

    def evaluate(self, archs: list[Architecture]) -> Sample:
        """Log-probabilities and entropies of given architectures under the policy."""
        forced = torch.tensor([self.to_tokens(a) for a in archs], dtype=torch.long)
        return self._run(len(archs), None, forced=forced)

    def greedy(self) -> Architecture:
        """The controller's preferred architecture: the argmax at every step."""
        with torch.no_grad():
            return self._run(1, None, greedy=True).architectures[0]

    def step_distributions(
        self, arch: Architecture | None = None
    ) -> list[tuple[list[str], list[float]]]:
        """Allowed choices and their probabilities at each step along ``arch``
        (default: the greedy architecture). For plots and widgets."""
        arch = self.greedy() if arch is None else arch
        tokens = self.to_tokens(arch)
        names = self.token_names()
        out = []
        with torch.no_grad():
            token = torch.zeros(1, dtype=torch.long)
            state = None
            for step, next_token in enumerate(tokens):
                logits, state = self.step_logits(token, state, step)
                probs = torch.softmax(logits, dim=-1)[0]
                allowed = self.step_mask(step).nonzero().flatten().tolist()
                out.append(
                    ([names[i] for i in allowed], [probs[i].item() for i in allowed])
                )
                if next_token in (-1, self.end_token):
                    break
                token = torch.tensor([next_token])
        return out

    # persistence ------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Save weights with the search space and settings (no pickled code)."""
        torch.save(self.to_payload(), path)

    def to_payload(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "library_version": __version__,
            "space": self.space.to_dict(),
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "state_dict": self.state_dict(),
        }

    @classmethod
    def load(
        cls, path: str | Path | io.BytesIO, space: SearchSpace | None = None
    ) -> Controller:
        """Load a saved controller; refuse one from another search space.

        Uses weights-only loading, so a file cannot run code.

        Raises
        ------
        ValueError
            If the file holds more than weights, or its format version, library
            version or search space differs from this library's or ``space``.
        """
        payload = load_weights_only(path, f"controller {path}")
        return cls.from_payload(payload, space, source=str(path))

    @classmethod
    def from_payload(
        cls, payload: Any, space: SearchSpace | None = None, source: str = "payload"
    ) -> Controller:
        """Inverse of :meth:`to_payload`, with the checks of :meth:`load`."""
        if not isinstance(payload, dict) or "format_version" not in payload:
            raise ValueError(f"{source} is not a saved controller")
        if payload["format_version"] != FORMAT_VERSION:
            raise ValueError(
                f"{source} has controller format version {payload['format_version']}, "
                f"this library reads version {FORMAT_VERSION}"
            )
        saved_version = payload.get("library_version")
        if saved_version != __version__:
            raise ValueError(
                f"{source} was saved by automl_lib {saved_version}; this is "
                f"automl_lib {__version__}"
            )
        try:
            saved_space = SearchSpace.from_dict(payload["space"])
            controller = cls(saved_space, payload["hidden_size"], payload["num_layers"])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{source} holds bad settings: {error}") from None
        if space is not None and saved_space != space:
            raise ValueError(
                f"{source} was trained on another search space "
                f"({space.describe_difference(saved_space)}; saved vs requested)"
            )
        try:
            controller.load_state_dict(payload["state_dict"])
        except (KeyError, TypeError, RuntimeError) as error:
            raise ValueError(f"{source} holds bad weights: {error}") from None
        return controller
