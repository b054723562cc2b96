"""The policy's vocabulary: byte-level BPE for CoC text + special + trajectory tokens.

One id space holds the BPE tokens (trained on the CoC corpus with the HF ``tokenizers``
library), the structural special tokens, and ``2 * trajectory_bins`` trajectory tokens:
``<a_i>`` (acceleration bin i) and ``<k_i>`` (curvature bin i), uniform bins over the AR1
control bounds. A plan of 64 controls is 128 tokens: ``a_0 k_0 a_1 k_1 ...``. Saved as one
``tokenizer.json`` (the library's own format; JSON, no pickle).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from alpamayo_ros import taxonomy
from alpamayo_ros.unicycle import MAX_ABS_ACCELERATION_MPS2, MAX_ABS_CURVATURE_PER_M

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
NAV_START, NAV_END = "<nav>", "</nav>"
COC_START, COC_END = "<coc>", "</coc>"
TRAJ_START, TRAJ_END = "<traj>", "</traj>"
SPECIAL_TOKENS = (PAD, BOS, EOS, NAV_START, NAV_END, COC_START, COC_END, TRAJ_START, TRAJ_END)
TOKENIZER_FILE = "tokenizer.json"


def seed_corpus() -> list[str]:
    """Taxonomy names in words: a corpus to build a vocabulary before CoC data exists."""
    texts = []
    for enum in (taxonomy.LongitudinalDecision, taxonomy.LateralDecision,
                 taxonomy.LongitudinalMetaAction, taxonomy.LateralMetaAction):
        texts += [m.value.replace("_", " ") for m in enum]
    texts += [m.name.lower().replace("_", " ") for m in taxonomy.ComponentType]
    return texts


class CocTokenizer:
    """Byte-level BPE + special tokens + trajectory tokens in one vocabulary."""

    def __init__(self, hf_tokenizer: object, trajectory_bins: int) -> None:
        self._tok = hf_tokenizer
        self.trajectory_bins = trajectory_bins
        ids = {name: self._tok.token_to_id(name) for name in SPECIAL_TOKENS}
        missing = [name for name, i in ids.items() if i is None]
        if missing:
            raise ValueError(f"tokenizer lacks special tokens {missing}")
        self.pad_id, self.bos_id, self.eos_id = ids[PAD], ids[BOS], ids[EOS]
        self.nav_start_id, self.nav_end_id = ids[NAV_START], ids[NAV_END]
        self.coc_start_id, self.coc_end_id = ids[COC_START], ids[COC_END]
        self.traj_start_id, self.traj_end_id = ids[TRAJ_START], ids[TRAJ_END]
        self.accel_offset = self._tok.token_to_id("<a_0>")
        self.curv_offset = self._tok.token_to_id("<k_0>")
        last_a = self._tok.token_to_id(f"<a_{trajectory_bins - 1}>")
        last_k = self._tok.token_to_id(f"<k_{trajectory_bins - 1}>")
        if (self.accel_offset is None or self.curv_offset is None
                or last_a != self.accel_offset + trajectory_bins - 1
                or last_k != self.curv_offset + trajectory_bins - 1
                or self._tok.token_to_id(f"<a_{trajectory_bins}>") is not None):
            raise ValueError(f"tokenizer trajectory tokens do not match "
                             f"trajectory_bins={trajectory_bins}")

    @classmethod
    def train(cls, texts: Iterable[str], bpe_vocab_size: int, trajectory_bins: int
              ) -> CocTokenizer:
        """Train the byte-level BPE on ``texts`` and add special + trajectory tokens."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=bpe_vocab_size, show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
        tok.train_from_iterator(list(texts), trainer=trainer)
        tok.add_special_tokens(list(SPECIAL_TOKENS))
        tok.add_special_tokens([f"<a_{i}>" for i in range(trajectory_bins)])
        tok.add_special_tokens([f"<k_{i}>" for i in range(trajectory_bins)])
        return cls(tok, trajectory_bins)

    @classmethod
    def load(cls, path: str | Path, trajectory_bins: int) -> CocTokenizer:
        """Load ``tokenizer.json`` (a file or the directory holding it)."""
        from tokenizers import Tokenizer

        path = Path(path)
        if path.is_dir():
            path = path / TOKENIZER_FILE
        return cls(Tokenizer.from_file(str(path)), trajectory_bins)

    def save(self, directory: str | Path) -> Path:
        """Write ``tokenizer.json`` into ``directory``."""
        path = Path(directory) / TOKENIZER_FILE
        self._tok.save(str(path))
        return path

    @property
    def vocab_size(self) -> int:
        """Total ids, special and trajectory tokens included."""
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Ids of plain text (special-token strings in ``text`` are not special here)."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """:meth:`encode` plus each token's character span ``(start, end)`` in ``text``."""
        enc = self._tok.encode(text, add_special_tokens=False)
        return list(enc.ids), [tuple(o) for o in enc.offsets]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``, skipping special and trajectory tokens."""
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=True)

    def is_text_id(self, token_id: int) -> bool:
        """True for BPE text tokens (not special, not trajectory)."""
        return 0 <= token_id < self.pad_id

    # --- trajectory tokens -------------------------------------------------------------
    def controls_to_bins(self, controls: np.ndarray) -> np.ndarray:
        """Uniform bin of each control, ``(..., T, 2)`` float -> ``(..., T, 2)`` int."""
        c = np.asarray(controls, dtype=np.float64)
        bounds = np.array([MAX_ABS_ACCELERATION_MPS2, MAX_ABS_CURVATURE_PER_M])
        unit = (np.clip(c / bounds, -1.0, 1.0) + 1.0) / 2.0  # [0, 1]
        return np.minimum((unit * self.trajectory_bins).astype(np.int64),
                          self.trajectory_bins - 1)

    def bins_to_controls(self, bins: np.ndarray) -> np.ndarray:
        """Bin centres, ``(..., T, 2)`` int -> ``(..., T, 2)`` float (m/s^2, 1/m)."""
        b = np.asarray(bins, dtype=np.float64)
        bounds = np.array([MAX_ABS_ACCELERATION_MPS2, MAX_ABS_CURVATURE_PER_M])
        return ((b + 0.5) / self.trajectory_bins * 2.0 - 1.0) * bounds

    def controls_to_ids(self, controls: np.ndarray) -> np.ndarray:
        """``(..., T, 2)`` controls -> ``(..., 2T)`` token ids ``a_0 k_0 a_1 k_1 ...``."""
        bins = self.controls_to_bins(controls)
        ids = bins + np.array([self.accel_offset, self.curv_offset])
        return ids.reshape(*ids.shape[:-2], -1)

    def ids_to_controls(self, ids: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`controls_to_ids` (bin centres); bad ids raise ValueError."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.shape[-1] % 2:
            raise ValueError(f"trajectory ids need an even length, got {ids.shape[-1]}")
        pairs = ids.reshape(*ids.shape[:-1], -1, 2) - np.array([self.accel_offset,
                                                                self.curv_offset])
        if pairs.min(initial=0) < 0 or pairs.max(initial=0) >= self.trajectory_bins:
            raise ValueError("ids are not trajectory tokens in a_i k_i order")
        return self.bins_to_controls(pairs)
