module github.com/millrace/millrace/cmd/millrace-sqlite

go 1.26.0

replace (
	github.com/millrace/millrace => ../..
	github.com/millrace/millrace/driver/sqlite => ../../driver/sqlite
)

require (
	github.com/millrace/millrace v0.0.0-00010101000000-000000000000
	github.com/millrace/millrace/driver/sqlite v0.0.0-00010101000000-000000000000
	go.uber.org/goleak v1.3.0
)

require (
	github.com/dustin/go-humanize v1.1.0 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/mattn/go-isatty v0.0.24 // indirect
	github.com/ncruces/go-strftime v1.1.0 // indirect
	github.com/remyoudompheng/bigfft v0.0.0-20230129092748-24d4a6f8daec // indirect
	github.com/robfig/cron/v3 v3.0.1 // indirect
	golang.org/x/sys v0.49.0 // indirect
	modernc.org/libc v1.80.1 // indirect
	modernc.org/mathutil v1.7.1 // indirect
	modernc.org/memory v1.12.1 // indirect
	modernc.org/sqlite v1.62.0 // indirect
)
