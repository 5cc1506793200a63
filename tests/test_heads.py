import math

import numpy as np
import pytest
import torch

from pipeline.heads import HeadSums


def test_a_step_round_trips_through_a_tensor():
    sums = HeadSums(torch.tensor(6.0), torch.tensor(3), torch.tensor(2), torch.tensor(1.5), torch.tensor(2),
                    torch.tensor(1))
    vector = sums.to_tensor()
    assert vector.dtype == torch.float32 and vector.tolist() == [6.0, 3.0, 2.0, 1.5, 2.0, 1.0]
    assert HeadSums.from_tensor(vector).metrics("sop") == pytest.approx(
        {"mlm_loss": 2.0, "mlm_accuracy": 2 / 3, "perplexity": math.exp(2.0), "sop_loss": 0.75, "sop_accuracy": 0.5})


def test_rows_of_examples_sum_column_by_column():
    rows = HeadSums(torch.tensor([1.0, 3.0]), torch.tensor([1, 3]), torch.tensor([1, 1]),
                    torch.tensor([0.5, 0.25]), torch.ones(2), torch.tensor([1.0, 0.0])).to_tensor()
    assert rows.shape == (2, 6)
    total = HeadSums.from_tensor(rows.numpy().astype(np.float64)).total()
    assert total.metrics() == pytest.approx({"mlm_loss": 1.0, "mlm_accuracy": 0.5, "perplexity": math.e,
                                             "nsp_loss": 0.375, "nsp_accuracy": 0.5})


def test_mlm_only_sums_have_no_sentence_metrics_and_a_wrong_width_is_refused():
    vector = HeadSums(torch.tensor(4.0), torch.tensor(2), torch.tensor(2)).to_tensor()
    assert vector.tolist() == [4.0, 2.0, 2.0, 0.0, 0.0, 0.0]
    assert set(HeadSums.from_tensor(vector).metrics()) == {"mlm_loss", "mlm_accuracy", "perplexity"}
    with pytest.raises(ValueError, match="6 values, not 5"):
        HeadSums.from_tensor(torch.zeros(5))
