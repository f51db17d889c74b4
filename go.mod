module github.com/sekisho/sekisho

go 1.26
