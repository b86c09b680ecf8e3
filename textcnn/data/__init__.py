"""Text data: Kim's benchmark files, SST trees, tables and hub datasets, as `datasets.Dataset`s.

Every loader returns a `datasets.Dataset` with the columns `text` (str) and `label` (int or str).
The package, file by file: `readers.py` (Kim's lines and SST trees, and how their bytes decode),
`tables.py` (CSV, TSV, JSON, Parquet and hub datasets), `load.py` (`load_data`, one entry point
that picks the reader) and `labels.py` (`LabelMap`: labels <-> class ids).
"""

from textcnn.data.labels import Label, LabelMap, label_sets, single_labels
from textcnn.data.load import detect_format, load_data
from textcnn.data.readers import decode_line, read_kim_file, read_sst_trees, unescape_ptb
from textcnn.data.tables import load_hub, read_table

__all__ = ["Label", "LabelMap", "decode_line", "detect_format", "label_sets", "load_data", "load_hub",
           "read_kim_file", "read_sst_trees", "read_table", "single_labels", "unescape_ptb"]
