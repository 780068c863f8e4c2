// Package faults is millrace's reliability suite: it works jobs on a real
// Postgres while things go wrong (a graceful stop under load, StopAndCancel,
// a stop deadline with a worker that ignores its context, a worker process
// killed with SIGKILL (with a survivor, and restarted), the leader process killed, every connection
// terminated, the LISTEN connection lost, the database restarted, bad rows
// written by hand) and then accounts for every job: none may be lost, and a
// job may run twice only where a crash explains it. It holds tests only;
// this file exists for the package documentation.
//
// Every scenario ends with an accounting query over all of its jobs and adds
// a row to the summary table printed when the suite ends: scenario, jobs
// inserted, completed, cancelled or discarded, still pending, lost,
// duplicated, time. A scenario with lost jobs fails.
//
//   - lost: jobs missing from the table, plus jobs left running once every
//     client is stopped (no one will ever finish them but a rescuer).
//   - duplicated: jobs whose Work ran to success more than once, counted
//     from a work_log table that the test worker writes on each call.
//   - pending: jobs still waiting (available, scheduled, retryable,
//     pending) at the end; every scenario expects none.
//
// Environment:
//
//	MILLRACE_FAULTS=full|reduced  sizes (default reduced, which make test runs;
//	                              make test-faults runs full: 20,000 jobs, 500 workers)
//	MILLRACE_FAULTS_SOAK=10m      loop scenarios 1, 4 and 6 for that long (make soak-faults)
//	MILLRACE_FAULTS_LOG=1         print the clients' logs as they happen
//	MILLRACE_FAULTS_DOMAINS=2m    TestDomains's duration (default 40 s reduced, 2 min full)
//
// TestDomains (domains_test.go) is separate from the scenarios: two
// services with their own domains, two processes each, on one database,
// with processes of both SIGKILLed and replaced; it checks that no job of
// one is cancelled or discarded by the other and that each service's
// periodic job keeps its schedule.
//
//	MILLRACE_FAULTS_PERIODIC_KILL_FOR=5m  how long TestDurablePeriodicLeaderKills
//	                              kills leaders (default 5m, at least 2m)
//
// TestDurablePeriodicLeaderKills, beside the scenarios, is the acceptance
// test of durable periodic jobs: leaders of three processes killed every
// 20 s for 5 minutes, then the whole cluster down for 3 ticks; it prints
// ticks expected, enqueued, doubled and missing.
//
// TestConcurrencyLimitProcesses (limit_test.go) is the acceptance test of
// concurrency limits across processes: four helper processes of 50
// workers under a global limit of 3 (150 jobs of 250 ms reduced, 10,000
// full), the database sampled every 10 ms, never more than 3 running, the
// throughput logged as a share of 3 / job duration; and a limit of 2 per
// customer over 100 customers, set in the database at run time.
//
// The shutdown and crash scenarios, 1 (graceful stop), 2 (StopAndCancel),
// 3 (Stop with a deadline, a worker deaf to its context, a peer whose
// rescuer must leave the live client's job alone), 4 (a worker process
// SIGKILLed, a peer rescues), 5 (the leader process SIGKILLed: failover,
// rescue, scheduler and durable periodic job go on) and 10 (SIGKILL, then
// restart), run through millracetest.ShutdownUnderLoad, the harness users
// run on their own workers, and add their own checks to its; their killed
// processes are this test binary run again for that scenario only.
//
// The heartbeat, domain, durable-periodic and concurrency-limit tests run this package's test
// binary again as worker processes (MILLRACE_FAULTS_HELPER=1, handled in
// TestMain) and kill them by PID.
// The database-restart scenario needs a throwaway cluster it may restart
// (internal/testdb); when the suite runs on another server, it runs that
// scenario in a child test process with MILLRACE_TESTDB=initdb, so it runs
// everywhere.
package faults
