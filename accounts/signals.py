"""Events other apps react to. accounts sends them and knows nothing of who listens."""

from django.dispatch import Signal

# Sent once by accounts.services.user_suspend, after the user row says suspended, with
# ``user=<User>``. Receivers drop what the user could still be handed (tokens forgets the
# user's cached credentials); they run in the suspending request, so a failure is seen there.
user_suspended = Signal()
