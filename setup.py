"""The compiled decoder, tree walker, numeric column pass and ECDF comparison; everything else about the package is in pyproject.toml.

``optional=True``: where no C compiler is available the install still succeeds and otel-ml runs its
pure-Python decoder (``otel_ml.decode.otlp``), which gives the same results, only slower.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "otel_ml.decode._otlp_columns",
            sources=["otel_ml/decode/_otlp_columns.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        ),
        Extension(  # a regressor's loss models at ingest (otel_ml/profile/loss_model.py); numpy without it
            "otel_ml.profile._trees",
            sources=["otel_ml/profile/_trees.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        ),
        Extension(  # a numeric column's moments and grid bins at ingest (otel_ml/profile/sketch.py); numpy without it
            "otel_ml.profile._columns",
            sources=["otel_ml/profile/_columns.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        ),
        # a numeric feature's scores at each evaluation: KS, Wasserstein, bin shares, distances (analyze/stats.py);
        # numpy without it
        Extension(
            "otel_ml.analyze._ecdf",
            sources=["otel_ml/analyze/_ecdf.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        ),
    ]
)
