"""The ledger's disk reserve on a real filesystem: really allocated, given up in steps, never
below the floor kept for opening the ledger, and made whole again. (A full disk: tests/system/test_disk_full.py.)"""

from __future__ import annotations

from pathlib import Path

from appliance.reserve import OPEN_RESERVE_BYTES, RESERVE_STEP_BYTES, Reserve

MIB = 1024 * 1024


def test_the_reserve_is_allocated_not_a_sparse_hole(tmp_path: Path) -> None:
    reserve = Reserve(tmp_path / "ledger.sqlite3.reserve", 3 * MIB)
    assert reserve.size == 0
    assert reserve.fill()
    st = reserve.path.stat()
    assert st.st_size == 3 * MIB
    assert st.st_blocks * 512 >= 3 * MIB, "blocks are allocated, so giving them up frees space"
    assert reserve.fill(), "a whole reserve stays whole"


def test_it_is_given_up_in_steps_down_to_the_floor_and_filled_again(tmp_path: Path) -> None:
    reserve = Reserve(tmp_path / "r", 2 * MIB + 512 * 1024)
    assert reserve.fill()
    freed = [reserve.release(floor=OPEN_RESERVE_BYTES) for _ in range(4)]
    assert freed == [RESERVE_STEP_BYTES, RESERVE_STEP_BYTES, 512 * 1024 - OPEN_RESERVE_BYTES, 0]
    assert reserve.size == OPEN_RESERVE_BYTES, "vital writes leave room for the next start"
    assert reserve.release(floor=0) == OPEN_RESERVE_BYTES  # opening on a full disk takes the rest
    assert not reserve.path.exists()
    assert reserve.release() == 0
    assert reserve.fill()
    assert reserve.size == 2 * MIB + 512 * 1024
