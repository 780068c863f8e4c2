// Package client is millrace's public API: a Client that inserts jobs and
// works them.
//
// Job args are Go structs with a Kind; workers are generic over them:
//
//	type EmailArgs struct {
//		To string `json:"to"`
//	}
//
//	func (EmailArgs) Kind() string { return "email" }
//
//	type EmailWorker struct{ client.WorkerDefaults[EmailArgs] }
//
//	func (w *EmailWorker) Work(ctx context.Context, job *client.Job[EmailArgs]) error {
//		return send(ctx, job.Args.To)
//	}
//
//	workers := client.NewWorkers()
//	client.AddWorker(workers, &EmailWorker{})
//	c, err := client.New(pgxv5.New(pool), &client.Config{
//		Queues:  map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: 100}},
//		Workers: workers,
//	})
//	err = c.Start(ctx)
//	_, err = c.InsertTx(ctx, tx, EmailArgs{To: "a@example.com"}, nil)
//	err = c.Stop(ctx)
//
// Jobs are stored in River's schema, so River and millrace clients can share
// a database. Delivery is at least once: a job runs again only after a
// crash (once rescued) or when it asks to (an error, a snooze).
package client
