DROP TABLE {{schema}}millrace_fair_partition;
