DROP TABLE {{schema}}millrace_client;
