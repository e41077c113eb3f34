"""How `BatchedStepScorer` groups items into batches."""

from prm.reward.scorer import length_batches


def test_length_batches_bound_the_batch_size_the_token_budget_and_the_padding():
    lengths = [100, 98, 95, 60, 58, 10, 300, 99]
    batches = length_batches(lengths, batch_size=3, max_tokens=1000)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    assert batches[0] == [6]  # 300 would pad 99 to 3x: alone
    for batch in batches:
        width = max(lengths[i] for i in batch)
        assert len(batch) <= 3 and len(batch) * width <= 1000
        assert all(lengths[i] >= 0.9 * width for i in batch)
    assert length_batches(lengths, batch_size=8, max_tokens=10**6, max_padding=1.0) == [[6, 0, 7, 1, 2, 3, 4, 5]]
