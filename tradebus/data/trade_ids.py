"""Trade ids of a replay chunk: the stored Arrow string column, each id made a ``str`` when read.

Listing a 64k-row batch's ids as Python strings (``to_pylist``) took about 2 ms, a quarter of
the replay's reading of the batch, and freeing them again more, while a backtest whose strategy
reads no trade reads the ids of the few rows where it builds one (an order's catch-up, its
fill). :class:`TradeIds` keeps the column as read and decodes an id when it is indexed; a slice
shares the buffers, iterating lists the column (or slice) at once.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Sequence
from typing import Any, overload

import numpy as np
import pyarrow as pa

__all__ = ["TradeIds", "trade_ids"]

#: Runs at most this long are listed in Python (an Arrow slice and ``to_pylist`` cost more).
_SHORT = 8


def trade_ids(column: pa.Array | pa.ChunkedArray) -> Sequence[str]:
    """The ids of a ``trade_id`` column as a sequence of ``str``, equal to ``column.to_pylist()``.

    A string column without nulls gives a :class:`TradeIds`; any other column is listed (a null id
    stays ``None``).
    """
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if array.null_count or not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        return array.to_pylist()  # type: ignore[no-any-return]
    return TradeIds(array)


class TradeIds(Sequence[str]):
    """The ids of a string column without nulls; ``ids[j]`` decodes row ``j`` (build with :func:`trade_ids`).

    It reads as a list of ``str`` does (index, slice, iterate, ``len``, ``==`` with any sequence of
    the same ids), and gives its Arrow column back to ``pyarrow`` (``pa.array(ids)``, a table's column).

    Parameters
    ----------
    array
        An Arrow ``string`` or ``large_string`` array without nulls.
    """

    __slots__ = ("_array", "_data", "_offsets", "_start", "_stop")

    def __init__(self, array: pa.Array) -> None:
        if array.null_count:
            raise ValueError("TradeIds holds a column without nulls; trade_ids() lists one with them")
        _, offsets, data = array.buffers()
        width = np.dtype(np.int64 if pa.types.is_large_string(array.type) else np.int32)
        self._array = array
        self._offsets = memoryview(
            np.frombuffer(offsets, dtype=width, count=len(array) + 1, offset=array.offset * width.itemsize)
        )
        self._data = b"" if data is None else data.to_pybytes()
        self._start = 0
        self._stop = len(array)

    def _cut(self, start: int, stop: int) -> TradeIds:
        """Rows ``start:stop`` of the whole column (indices into it), sharing its buffers."""
        out = object.__new__(TradeIds)
        out._array, out._offsets, out._data = self._array, self._offsets, self._data
        out._start, out._stop = start, stop
        return out

    def __len__(self) -> int:
        return self._stop - self._start

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...

    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        if isinstance(index, slice):
            start, stop, step = index.indices(self._stop - self._start)
            if step != 1:
                return [self[i] for i in range(start, stop, step)]
            return self._cut(self._start + start, self._start + max(start, stop))
        i = operator.index(index)
        if i < 0:
            i += self._stop - self._start
            if i < 0:
                raise IndexError("trade id index out of range")
        i += self._start
        if i >= self._stop:
            raise IndexError("trade id index out of range")
        offsets = self._offsets
        return self._data[offsets[i] : offsets[i + 1]].decode()

    def reader(self) -> Callable[[int], str]:
        """``read(j)``: ``self[j]`` for ``0 <= j < len(self)``, without the checks of indexing (``j`` is not checked).

        For a loop reading rows it knows to be in range (the batch trade loop building a trade now and then).
        """
        data, offsets, start = self._data, self._offsets, self._start

        def read(j: int) -> str:
            i = j + start
            return data[offsets[i] : offsets[i + 1]].decode()

        return read

    def __iter__(self) -> Iterator[str]:
        return iter(self.tolist())

    def tolist(self) -> list[str]:
        """The ids as a list of ``str``."""
        start, stop = self._start, self._stop
        if stop - start <= _SHORT:
            data, offsets = self._data, self._offsets
            return [data[offsets[i] : offsets[i + 1]].decode() for i in range(start, stop)]
        return self._array.slice(start, stop - start).to_pylist()  # type: ignore[no-any-return]

    def __arrow_array__(self, type: pa.DataType | None = None) -> pa.Array:  # noqa: A002 (pyarrow's name)
        array = self._array.slice(self._start, self._stop - self._start)
        return array if type is None or type == array.type else array.cast(type)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TradeIds | list | tuple):
            return self.tolist() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal to a list, so unhashable as one

    def __repr__(self) -> str:
        return f"TradeIds({self.tolist()!r})" if len(self) <= _SHORT else f"TradeIds(<{len(self)} ids>)"

    def __reduce__(self) -> tuple[Any, ...]:
        return (trade_ids, (self.__arrow_array__(),))
