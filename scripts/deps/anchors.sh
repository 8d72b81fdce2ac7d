# procps: `kill -TERM` stops a test's `okey serve` cleanly (its shutdown publishes the last audit anchor).
need_deb kill procps
