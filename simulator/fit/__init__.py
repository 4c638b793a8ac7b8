"""The fitting side: returns and macro data (``history``, ``data_sources``), maximum-likelihood calibration
(``calibrate``), the Bayesian posterior (``posterior``) and the out-of-sample backtest (``backtest``).

It uses the model side (scenarios, parameters, the engine, ``simulate``); the model side never imports it."""
