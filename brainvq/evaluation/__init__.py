"""How good it is: image and sample metrics, realism, covariate rulers, reports, figures."""
