"""Error measures between a float reference tensor and its quantized counterpart.

SNR follows the usual definition in quantization studies (e.g. Krishnamoorthi, "Quantizing deep
convolutional networks for efficient inference", 2018; TFLite's QuantizationDebugger reports the same
ratio per tensor): signal energy over error energy, in decibels. Sums are taken in float64.
"""

import math

import numpy as np


def snr_db(reference, test):
    """``10 * log10(sum(reference**2) / sum((reference - test)**2))`` over all elements.

    ``inf`` when ``test`` equals ``reference`` exactly (no error, even for an all-zero reference);
    ``-inf`` when the reference is all zero but ``test`` is not.
    """
    reference = np.asarray(reference, np.float64)
    error = reference - np.asarray(test, np.float64)
    return snr_db_from_energies(float(np.sum(reference**2)), float(np.sum(error**2)))


def snr_db_from_energies(signal_energy, error_energy):
    """SNR in dB from already accumulated energies (see :func:`snr_db` for the edge cases)."""
    if error_energy == 0:
        return math.inf
    if signal_energy == 0:
        return -math.inf
    return 10.0 * math.log10(signal_energy / error_energy)


def rmse(reference, test):
    """Root-mean-square difference over all elements."""
    error = np.asarray(reference, np.float64) - np.asarray(test, np.float64)
    return float(np.sqrt(np.mean(error**2)))
