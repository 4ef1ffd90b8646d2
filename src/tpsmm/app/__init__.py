"""``tpsmm serve``: the web page (``pip install 'tpsmm[app]'``).

- :mod:`~tpsmm.app.models`: the models offered and the one loaded;
- :mod:`~tpsmm.app.jobs`: one job, its limits, stopping it;
- :mod:`~tpsmm.app.page`: the Gradio page and its handlers (imports Gradio).
"""
