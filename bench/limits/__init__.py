"""Rate-limit scenarios against real processes: does Sluice hold provider limits exactly?

    python -m bench.limits [--quick] [--only burst,replicas,tokens,surprise] [--no-doc] [--logs DIR]
                               [--surprise-latency-ms MS]

Each scenario starts its own mock upstream(s), worker processes and one API process (sharing one
private redis-server for the run, each with its own key prefix), drives it over HTTP with
`x-sluice-max-wait: 600`, prints its figures and pass/fail, and records them in the section
"## Rate-limit scenarios (python -m bench.limits)" of docs/benchmarks.md (only that section is
rewritten; scenarios not run this time keep their previous subsection).

    burst     300 requests at once to a model on 2 accounts, each 60 rpm (config and mock)
    replicas  4 worker processes on one 120 rpm account, steady backlog, 60 s window
    tokens    TPM-bound (20000 tpm), ~50- and ~3000-token prompts mixed, 60 s window
    surprise  config says 120 rpm, the provider really allows 60: back off, fail nothing

`--quick` shrinks every scenario (30-request burst, 15 s windows) for development.
Exit status: 0 when every target was met, 1 otherwise.
"""
