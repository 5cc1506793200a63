import numpy as np

from pipeline.sampler import EpochDrawSampler


def test_each_epoch_trains_on_its_own_draw():
    draws = np.array([0] * 10 + [1] * 12 + [2] * 11)
    sampler = EpochDrawSampler(draws, None, batch_size=4, seed=0)
    assert len(sampler) == 10
    seen = []
    for epoch in range(4):
        sampler.set_epoch(epoch)
        rows = list(sampler)
        assert len(rows) == 10 and len(set(rows)) == 10
        assert set(draws[rows]) == {epoch % 3}
        seen.append(rows)
    sampler.set_epoch(0)
    assert list(sampler) == seen[0]  # deterministic for a seed
    assert list(EpochDrawSampler(draws, None, batch_size=4, seed=1)) != seen[0]


def grouped(n: int, longest: int) -> tuple[np.ndarray, list[int]]:
    """Lengths of n pairs of one draw, and the order a length-grouping sampler gives them (batches of 8)."""
    lengths = np.random.default_rng(0).integers(5, longest, n)
    rows = list(EpochDrawSampler(np.zeros(n, dtype=int), lengths, batch_size=8, seed=0))
    assert sorted(rows) == list(range(n))  # the whole draw, each pair once
    return lengths, rows


def test_group_by_length_keeps_the_draw():
    lengths, rows = grouped(400, 128)
    # Batches are length-homogeneous: far less padding than a random order.
    batches = [lengths[rows[i:i + 8]] for i in range(0, 400, 8)]
    random_batches = [lengths[i:i + 8] for i in range(0, 400, 8)]
    assert sum(b.max() * 8 - b.sum() for b in batches) < 0.5 * sum(b.max() * 8 - b.sum() for b in random_batches)


def test_grouped_batches_come_in_random_order_the_longest_first_a_short_one_last():
    """Sorted mega-batches would run each from long pairs to short: a trend across steps (SOP did not learn)."""
    lengths, rows = grouped(1003, 512)
    widths = np.array([lengths[rows[i:i + 8]].max() for i in range(0, 1003, 8)])
    assert widths[0] == lengths.max()
    assert len(rows[1000:]) == 3  # the short batch: still last, so the loader's batches stay whole
    # No trend: the widths of successive batches are as often larger as smaller (sorted: almost always smaller).
    steps = np.sign(np.diff(widths[1:-1]))
    assert abs(steps.mean()) < 0.2, steps.mean()
    assert grouped(1003, 512)[1] == rows  # deterministic for a seed
