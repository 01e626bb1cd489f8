"""Input drivers: planes reconstruct the integer input exactly; bad inputs are refused."""

import pytest
import torch

from crossbar_models import InputDriver


@pytest.mark.parametrize("mode, bits", [("binary", 1), ("bit_serial", 1), ("bit_serial", 3), ("bit_serial", 8), ("dac", 4)])
def test_planes_reconstruct_input(mode, bits):
    drv = InputDriver(mode=mode, bits=bits)
    g = torch.Generator().manual_seed(bits)
    x = torch.randint(0, 2**bits, (5, 7), generator=g).float()
    planes = drv.planes(x)
    assert planes.shape == (drv.n_planes, 5, 7)
    assert bool(((planes >= 0) & (planes <= 1)).all())
    w = drv.plane_weights(dtype=torch.float64)
    recon = (w.view(-1, 1, 1) * planes.double()).sum(0)
    torch.testing.assert_close(recon, x.double(), rtol=1e-6 if mode == "dac" else 0, atol=1e-6 if mode == "dac" else 0)
    if mode == "bit_serial":
        assert set(planes.unique().tolist()) <= {0.0, 1.0}
        # Independent reference: bit k of x by integer division.
        for k in range(bits):
            assert torch.equal(planes[k], ((x.long() // 2**k) % 2).float())


def test_reads_per_input():
    assert InputDriver("binary").n_planes == 1
    assert InputDriver("bit_serial", bits=6).n_planes == 6
    assert InputDriver("dac", bits=6).n_planes == 1


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match=r"must be binary spikes \(0 or 1\), got 0.5"):
        InputDriver("binary").planes(torch.tensor([0.0, 0.5]))
    with pytest.raises(ValueError, match=r"must be integers in \[0, 7\], got 8"):
        InputDriver("bit_serial", bits=3).planes(torch.tensor([8.0]))
    with pytest.raises(ValueError, match=r"must be integers in \[0, 7\], got -1"):
        InputDriver("dac", bits=3).planes(torch.tensor([-1.0]))
    with pytest.raises(ValueError, match="InputDriver.mode must be one of"):
        InputDriver("pwm")
    with pytest.raises(ValueError, match="bits must be 1 for mode 'binary'"):
        InputDriver("binary", bits=2)
    with pytest.raises(ValueError, match=r"InputDriver.v_read must be > 0.0"):
        InputDriver("binary", v_read=0.0)
