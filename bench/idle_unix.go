//go:build unix

package main

import "syscall"

// idleClosed reports whether an idle connection is unusable: the service
// closed it (a peek that does not wait reads its end), sent something
// unasked, or the socket fails. One recv(2) with MSG_PEEK|MSG_DONTWAIT.
func idleClosed(cn *conn) bool {
	if cn.br.Buffered() > 0 {
		return true
	}
	sc, ok := cn.Conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	closed := true
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		closed = rerr != syscall.EAGAIN && rerr != syscall.EWOULDBLOCK
		return true
	})
	return closed || err != nil
}
