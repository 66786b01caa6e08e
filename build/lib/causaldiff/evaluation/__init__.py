"""Counterfactual evaluation: anti-causal predictors, axiomatic metrics, true-counterfactual error, DCI."""
