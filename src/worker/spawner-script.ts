// The spawner helper's Perl source (see spawner.ts). Perl because perl-base is on every Debian-like system
// (Essential) and forking it is cheap; only core modules that perl-base ships (POSIX, Errno) are used.

export const SPAWNER_SCRIPT = String.raw`# tsched spawner: a small long-lived helper that forks and execs the worker's runs, so that the worker (a big
# Node process) never forks itself. Forking this ~5 MB process is far cheaper than forking Node, and the child
# joins the run's cgroups itself before exec, so the task is inside before its first instruction with no
# wrapper shell exec'd in between.
#
# Requests on stdin, one per frame: "<kind> <len>\n" then <len> bytes of NUL-separated fields:
#   S: runId, cwd, nProcs, procsFile..., nArgv, argv..., nEnv, "K=V"...   (start a run in cwd, made if missing)
#   R: seq, dir                                                            (rmdir an empty run directory)
# Events on stdout, one per frame: "<type> <runId> <len>\n<data>":
#   P pid          the task was exec'd (its pid, also its process group and session id)
#   F errno msg    it could not start (exec or cgroup join failed); X and D follow
#   O / E bytes    stdout / stderr output
#   X code sig     it exited (waitpid); the worker kills what is left of its group and cgroup
#   R errno        (id = seq of an R request) the rmdir's outcome: empty when removed, else the errno name
#   D              its pipes are closed (EOF, or dropped 1–2 s after X): nothing more comes for this run
$0 = 'tsched-spawner';
use strict;
use warnings;
use POSIX ();
use Errno ();

$SIG{PIPE} = 'IGNORE';
binmode STDIN;
binmode STDOUT;
my $out = '';    # pending bytes to stdout, written as the pipe takes them
my %byfd;        # fileno -> [runId, 'O'|'E'|'W', fh]
my %run;         # runId -> { pid, open, exited, errfh }
my %pidrun;      # pid -> runId
my $inbuf = '';

pipe(my $sigr, my $sigw) or die "pipe: $!";
POSIX::fcntl($_, POSIX::F_SETFL(), POSIX::O_NONBLOCK()) for (fileno($sigr), fileno($sigw));
$SIG{CHLD} = sub { syswrite($sigw, 'x') };

sub ev { my ($t, $id, $d) = @_; $d //= ''; $out .= "$t $id " . length($d) . "\n" . $d; }

sub start_run {
  my @f = split /\0/, $_[0], -1;
  my $id = shift @f;
  my $cwd = shift @f;
  my @procs = splice(@f, 0, shift @f);
  my @argv = splice(@f, 0, shift @f);
  my @env = splice(@f, 0, shift @f);
  my ($or, $ow, $er, $ew, $xr, $xw);
  unless (pipe($or, $ow) && pipe($er, $ew) && pipe($xr, $xw)) {
    ev('F', $id, "EMFILE could not create pipes: $!"); ev('X', $id, ''); ev('D', $id); return;
  }
  my $pid = fork();
  if (!defined $pid) { ev('F', $id, "EAGAIN fork: $!"); ev('X', $id, ''); ev('D', $id); return; }
  if ($pid == 0) {
    # The child: its own session and group, the run's cgroups, the run's directory, then the task.
    close $_ for ($or, $er, $xr, $sigr, $sigw);
    $SIG{CHLD} = 'DEFAULT'; $SIG{PIPE} = 'DEFAULT';
    POSIX::setsid();
    my $fail = sub { my ($code, $msg) = @_; syswrite($xw, "$code $msg"); POSIX::_exit(127); };
    # Raw syscalls: perl's open() adds an ioctl, an lseek and an fstat per file.
    for my $p (@procs) {
      my $fd = POSIX::open($p, POSIX::O_WRONLY());
      defined $fd && defined POSIX::write($fd, "$$\n", length("$$\n")) or $fail->('ECGROUP', "could not join cgroup $p: $!");
      POSIX::close($fd);
    }
    # The run's directory is made here, off the worker's event loop (it may exist already: inline scripts).
    mkdir($cwd, 0755) or $!{EEXIST} or $fail->(errname(), "mkdir $cwd: $!");
    chdir($cwd) or $fail->(errname(), "chdir $cwd: $!");
    my $null = POSIX::open('/dev/null', POSIX::O_RDONLY());
    if (defined $null) { POSIX::dup2($null, 0); POSIX::close($null) if $null > 2; }
    POSIX::dup2(fileno($ow), 1); POSIX::dup2(fileno($ew), 2);
    %ENV = ();
    for my $kv (@env) { my $i = index($kv, '='); $ENV{substr($kv, 0, $i)} = substr($kv, $i + 1) if $i > 0; }
    { no warnings 'exec'; exec { $argv[0] } @argv; }
    $fail->(errname(), "$!");
  }
  close $_ for ($ow, $ew, $xw);
  $run{$id} = { pid => $pid, open => 3, exited => 0, errfh => $xr, failed => 0 };
  $pidrun{$pid} = $id;
  for ([$or, 'O'], [$er, 'E'], [$xr, 'W']) { $byfd{fileno($_->[0])} = [$id, $_->[1], $_->[0]]; }
}

sub errname { for my $n (keys %!) { return $n if $!{$n} } return 'EUNKNOWN'; }

sub close_fd {
  my ($fd) = @_;
  my $e = delete $byfd{$fd} or return;
  my $r = $run{$e->[0]};
  if ($e->[1] eq 'W' && !$r->{failed}) { ev('P', $e->[0], $r->{pid}); }
  close $e->[2];
  $r->{open}--;
  finish($e->[0]) if $r->{open} == 0 && $r->{exited};
}

sub finish { my ($id) = @_; delete $run{$id}; ev('D', $id); }

sub read_fd {
  my ($fd) = @_;
  my $e = $byfd{$fd} or return;
  my $n = sysread($e->[2], my $buf, 65536);
  if (!defined $n) { return if $!{EAGAIN} || $!{EINTR}; close_fd($fd); return; }
  if ($n == 0) { close_fd($fd); return; }
  if ($e->[1] eq 'W') {
    # exec failed: "ERRNO message"
    my $r = $run{$e->[0]};
    $r->{failed} = 1;
    ev('F', $e->[0], $buf);
    return;
  }
  ev($e->[1], $e->[0], $buf);
}

sub reap {
  while ((my $pid = waitpid(-1, POSIX::WNOHANG())) > 0) {
    my $status = $?;
    my $id = delete $pidrun{$pid};
    next unless defined $id;
    my $r = $run{$id} or next;
    # Settle the exec report first, so that P or F always comes before X.
    my $w = fileno($r->{errfh});    # undef once it was closed (exec reported)
    if (defined $w) { read_fd($w) while exists $byfd{$w} && $byfd{$w}[2] == $r->{errfh}; }
    my $code = POSIX::WIFEXITED($status) ? POSIX::WEXITSTATUS($status) : '';
    my $sig = POSIX::WIFSIGNALED($status) ? POSIX::WTERMSIG($status) : '';
    ev('X', $id, "$code $sig");
    $r->{exited} = 1;
    $r->{deadline} = time() + 2;    # whole seconds only (perl-base has no Time::HiRes): 1–2 s
    finish($id) if $r->{open} == 0;
  }
}

my $stdin_open = 1;
while ($stdin_open || %run) {
  my $rin = '';
  vec($rin, fileno($sigr), 1) = 1;
  vec($rin, 0, 1) = 1 if $stdin_open;
  vec($rin, $_, 1) = 1 for keys %byfd;
  my $win = '';
  vec($win, 1, 1) = 1 if length $out;
  my $timeout = (grep { $_->{exited} } values %run) ? 0.25 : undef;
  my $n = select(my $rout = $rin, my $wout = $win, undef, $timeout);
  if ($n < 0) { next if $!{EINTR}; die "select: $!"; }
  if ($n > 0 && vec($rout, fileno($sigr), 1)) { sysread($sigr, my $junk, 4096); }
  if ($n > 0 && $stdin_open && vec($rout, 0, 1)) {
    my $got = sysread(STDIN, $inbuf, 1 << 20, length $inbuf);
    if (!$got) { $stdin_open = 0 unless defined $got && $!{EINTR}; }
    while ($inbuf =~ /^([SR]) (\d+)\n/) {
      my ($kind, $len) = ($1, $2); my $hl = length($len) + 3;
      last if length($inbuf) < $hl + $len;
      my $req = substr($inbuf, $hl, $len);
      substr($inbuf, 0, $hl + $len) = '';
      if ($kind eq 'S') { start_run($req); }
      else {
        # R: remove an empty run directory: "seq\0dir" -> "R seq <errno name or empty>"
        my ($seq, $dir) = split /\0/, $req, 2;
        ev('R', $seq, rmdir($dir) ? '' : errname());
      }
    }
  }
  if ($n > 0) { for my $fd (keys %byfd) { read_fd($fd) if vec($rout, $fd, 1); } }
  reap();
  # A process that escaped with the pipe open must not hold its run forever: drop the pipes 1–2 s after exit.
  for my $id (keys %run) {
    my $r = $run{$id};
    next unless $r->{exited} && time() >= $r->{deadline};
    for my $fd (grep { $byfd{$_}[0] eq $id } keys %byfd) { close((delete $byfd{$fd})->[2]); }
    finish($id);
  }
  if (length $out) {
    my $w = syswrite(STDOUT, $out);
    if (defined $w) { substr($out, 0, $w) = ''; }
    elsif (!$!{EAGAIN} && !$!{EINTR}) { exit 0; }    # the worker is gone
  }
}
# Flush what is left, then go.
while (length $out) { my $w = syswrite(STDOUT, $out); last unless defined $w; substr($out, 0, $w) = ''; }
exit 0;
`;
