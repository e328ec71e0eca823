module wsring.dev/cluster/images

go 1.24.0
