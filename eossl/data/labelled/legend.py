"""Legend files: label code -> class name, from a CSV/TSV whose columns are found by content.

The code column is the integer column whose values cover the most label codes present; the name column the text
column whose values most often contain letters (``name`` beats a code-like ``11-01-01-000-1`` column). Either can
be given by name instead.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

__all__ = ["read_legend"]


def _read_table(path: str) -> pd.DataFrame:
    sep = "\t" if Path(path).suffix.lower() in (".tsv", ".tab") else None
    try:
        return pd.read_csv(path, sep=sep, engine="python", dtype=str, keep_default_na=False)
    except Exception as err:
        raise ValueError(f"cannot read legend {path} as CSV/TSV: {err}") from err


def _integer_columns(df: pd.DataFrame) -> dict[str, set[int]]:
    out = {}
    for col in df.columns:
        num = pd.to_numeric(df[col].str.strip(), errors="coerce")
        if len(num) and num.notna().all() and (num == num.round()).all():
            out[col] = set(num.astype("int64"))
    return out


def _name_column(df: pd.DataFrame, code_column: str, path: str) -> str:
    scores = {}
    for col in df.columns:
        if col == code_column:
            continue
        values = df[col].astype(str)
        scores[col] = values.str.contains(r"[A-Za-z]", regex=True).mean()
    if not scores or max(scores.values()) == 0:
        raise ValueError(f"legend {path}: no column holds class names (columns: {list(df.columns)}); "
                         f"pass name_column=")
    return max(scores, key=scores.get)


def _check_column(df: pd.DataFrame, column: str, what: str, path: str) -> None:
    if column not in df.columns:
        raise ValueError(f"legend {path} has no column {column!r} ({what}); its columns: {list(df.columns)}")


def read_legend(path: str | Path, codes: list[int], code_column: str | None = None,
                name_column: str | None = None) -> tuple[dict[int, str], list[int]]:
    """(code -> name for every code in ``codes``, the codes the legend does not name: named by their number).

    ValueError naming the file and its columns when no column holds codes or names.
    """
    path = str(path)
    if not Path(path).is_file():
        raise FileNotFoundError(f"legend file not found: {path}")
    df = _read_table(path)
    ints = _integer_columns(df)
    if code_column is not None:
        _check_column(df, code_column, "code_column", path)
        if code_column not in ints:
            raise ValueError(f"legend {path}: column {code_column!r} does not hold integer codes only")
    else:
        if not ints:
            raise ValueError(f"legend {path}: no column holds integer codes (columns: {list(df.columns)}); "
                             f"pass code_column=")
        code_column = max(ints, key=lambda c: len(ints[c] & set(codes)))
        if codes and not ints[code_column] & set(codes):
            raise ValueError(f"legend {path}: no integer column holds the label codes {codes[:10]} "
                             f"(integer columns: {list(ints)}); pass code_column= or check the legend")
    if name_column is not None:
        _check_column(df, name_column, "name_column", path)
    else:
        name_column = _name_column(df, code_column, path)
    table: dict[int, str] = {}
    for code, name in zip(pd.to_numeric(df[code_column].str.strip()).astype("int64"), df[name_column], strict=True):
        table.setdefault(int(code), str(name).strip())
    missing = [c for c in codes if c not in table]
    return {c: table.get(c, str(c)) for c in codes}, missing
