"""The request portal: requesters file cases through start forms (forms), follow and answer them (views,
selectors), stage uploads between tries (staging) and get status emails (mail); URLs in urls.py."""
