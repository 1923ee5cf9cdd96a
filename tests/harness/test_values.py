"""Corpus-level values: one value per task, its standard error carried to lm-eval's Stderr column."""

from __future__ import annotations

import math
import pickle

import pytest

from nextlaw_task.harness.values import CorpusValue, corpus_stderr, corpus_value


def test_corpus_value_checks_that_documents_agree():
    assert corpus_value([0.5, 0.5, 0.5]) == 0.5
    assert math.isnan(corpus_value([math.nan, math.nan]))
    with pytest.raises(ValueError, match="different corpus metrics"):
        corpus_value([0.5, 0.6])


def test_corpus_stderr_reads_the_error_the_documents_carry():
    assert corpus_stderr([CorpusValue(0.5, 0.01)] * 3) == 0.01
    assert corpus_stderr([CorpusValue(3.0)] * 2) == "N/A"
    assert math.isnan(corpus_stderr([CorpusValue(0.5, math.nan), CorpusValue(0.5, math.nan)]))
    with pytest.raises(ValueError, match="different standard errors"):
        corpus_stderr([CorpusValue(0.5, 0.01), CorpusValue(0.5, 0.02)])


def test_a_corpus_value_survives_pickling_as_data_parallel_gathering_does():
    value = pickle.loads(pickle.dumps(CorpusValue(0.25, 0.003)))
    assert type(value) is CorpusValue and value == 0.25 and value.stderr == 0.003
