"""``avs`` commands that are not DVC pipeline stages: ``predict`` (any video -> masks) and ``report``
(re-render or compare evaluation pages). ``stages/`` itself holds one module per dvc.yaml stage."""
