"""Shared fixtures: the LXT 2.1 references (one subprocess for all twins) and the Flax twins."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
import pytest

HERE = Path(__file__).parent
MODELS = ("llama", "gpt2", "vit")


@pytest.fixture(scope="session")
def lxt_refs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``{model: npz}`` written by ``lxt_reference.py`` in a fresh interpreter (LXT patches classes
    process-wide; this process never sees a patched class)."""
    pytest.importorskip("lxt")
    pytest.importorskip("transformers")
    pytest.importorskip("torchvision")
    folder = tmp_path_factory.mktemp("lxt")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, str(HERE / "lxt_reference.py"), str(folder), *MODELS],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"lxt_reference.py failed:\n{done.stderr[-4000:]}")
    return {m: dict(np.load(folder / f"{m}.npz")) for m in MODELS}


def state_of(ref: dict[str, Any]) -> dict[str, np.ndarray]:
    return {k[len("state/") :]: v for k, v in ref.items() if k.startswith("state/")}


def twin(name: str, ref: dict[str, Any], *, embedded: bool = True) -> tuple[Any, Any, Any]:
    """``(model, variables, x)`` of the Flax twin of ``name`` with the reference's weights; token
    models take the token embedding (``embedded=True``, as LXT explains them) or the token ids."""
    from tests.transformers import twins
    from xai_jax.models.transformers import ViT

    state = state_of(ref)
    if name == "vit":
        model = ViT(image_size=28, patch=7, dim=32, depth=2, heads=2, mlp_dim=64, num_classes=10)
        return model, twins.vit_variables(state, 2), jnp.asarray(ref["x"].transpose(0, 2, 3, 1))
    if name == "llama":
        model, variables, table = (
            twins.Llama(embedded=embedded),
            twins.llama_variables(state, 2),
            "model.embed_tokens.weight",
        )
    else:
        model, variables, table = (
            twins.GPT2(embedded=embedded),
            twins.gpt2_variables(state, 2),
            "transformer.wte.weight",
        )
    ids = jnp.asarray(ref["ids"])
    return model, variables, (jnp.asarray(state[table])[ids] if embedded else ids)
